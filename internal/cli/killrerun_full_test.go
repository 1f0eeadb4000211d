//go:build killrerun

package cli

// The killrerun build tag runs the full kill-and-rerun matrix (make e2e,
// make bench): killFullTries tries per (phase, signal, moment).
func init() { killFull = true }
