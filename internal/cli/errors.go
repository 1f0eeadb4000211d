package cli

import (
	"context"
	"errors"
	"net/http"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// Exit codes. The one place errors become codes; listed in `fleet --help`.
const (
	ExitOK          = 0
	ExitError       = 1   // anything else
	ExitUsage       = 2   // bad flags or arguments
	ExitSpec        = 3   // droplets.yaml is invalid
	ExitConfig      = 4   // missing token, bad credentials, account set-up
	ExitRefused     = 5   // refused in this state, or needs --yes
	ExitTimeout     = 6   // a wait ran out
	ExitAPI         = 7   // the API answered an error
	ExitDeploy      = 8   // a deploy failed; its candidate was kept, marked failed
	ExitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

const exitCodesHelp = `Exit codes:
  0    success
  1    error
  2    bad flags or arguments
  3    droplets.yaml is invalid
  4    missing token, bad credentials or account set-up
  5    refused in this state (or --yes is needed; a rollback that would
       lose writes made since the promote; another fleet holds the
       project's lock: up, promote, rollback, prune, destroy, backup and
       restore take it, --lock-wait waits for it; the reserved IP is
       in another region than the droplet it would move to; a promote
       or rollback whose freeze window would overrun
       stack.data.freeze_budget, refused before the freeze or aborted
       before the IP moved)
  6    a wait timed out
  7    the API answered an error (or its rate limit asks for a longer
       wait than fleet makes: at most 30s)
  8    a deploy failed; the candidate is kept, marked failed (or a bake's
       cloud-init failed; its droplet is destroyed; or DigitalOcean's
       vendor-data failed, e.g. the agent droplet.monitoring installs)
  130  interrupted
With --json, a failure prints {"error": {"message": "...", "code": "<word>",
"exit": N, ...}} on stdout; code is error, usage, spec, config, refused,
timeout, api, deploy or interrupted (see docs/json.md).
`

// UsageError is a bad flag or argument.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ConfigError is missing configuration, such as the token.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// exitCode maps an error to its exit code.
func exitCode(err error) int {
	var (
		ue  *UsageError
		ce  *ConfigError
		se  *spec.Errors
		dce *deploy.ConfigError
		cf  *deploy.ConflictError
		re  *RefusedError
		de  *deploy.DeployError
		be  *deploy.BakeError
		te  *cloud.TimeoutError
		ae  *cloud.APIError
		rl  *cloud.RateLimitError
		wr  *deploy.WritesAtRiskError
		fb  *deploy.FreezeBudgetError
		he  *lock.HeldError
		le  *lock.LostError
		rg  *deploy.RegionError
		vd  *deploy.VendorDataError
		fe  *deploy.ForwardingError
		cx  *childExit
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &cx):
		return cx.code
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &se):
		return ExitSpec
	case errors.As(err, &ce), errors.As(err, &dce):
		return ExitConfig
	case errors.As(err, &cf), errors.As(err, &re), errors.As(err, &wr), errors.As(err, &fb), errors.As(err, &he), errors.As(err, &le), errors.As(err, &rg), errors.As(err, &fe):
		return ExitRefused
	case errors.As(err, &de), errors.As(err, &be), errors.As(err, &vd):
		return ExitDeploy
	case errors.As(err, &te):
		return ExitTimeout
	case errors.As(err, &rl):
		return ExitAPI
	case errors.As(err, &ae):
		if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
			return ExitConfig
		}
		return ExitAPI
	}
	return ExitError
}

// RefusedError is a destructive action without confirmation.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }
