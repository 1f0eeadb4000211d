package cli

// The --json contract: what every command prints on stdout with --json,
// in one place. docs/json.md describes each type field by field, and
// jsonout_test.go checks that every command decodes into its type (no
// unknown fields) and that the docs name every field. Rules:
//   - one JSON document per command, on stdout; progress stays on stderr;
//   - times are RFC 3339 in UTC, durations are seconds (float), byte
//     counts are integers;
//   - fields are added, never renamed or removed without a major version.

import (
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/scaffold"
	"github.com/fleetdeploy/fleet/internal/spec"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // messages hold <project> and the like, for people too
	return enc.Encode(v)
}

// rfc3339 is t in UTC; "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// dropletJSON is a droplet of the project, as status and the lifecycle
// commands show it.
type dropletJSON struct {
	ID         int    `json:"id"`               // DigitalOcean's droplet ID
	Name       string `json:"name"`             // <project>-<version>-<suffix>
	Version    string `json:"version"`          // "" for a bake droplet
	Role       string `json:"role"`             // live, candidate, previous, failed, or bake
	Status     string `json:"status"`           // DigitalOcean's: new, active, off, archive
	PublicIPv4 string `json:"public_ipv4"`      // its own address, never the reserved IP; "" before it has one
	CreatedAt  string `json:"created_at"`       // RFC 3339 UTC
	Health     string `json:"health,omitempty"` // healthy or unhealthy; absent before any gate ran
}

func toJSON(m *deploy.Member) *dropletJSON {
	if m == nil {
		return nil
	}
	return &dropletJSON{
		ID: m.ID, Name: m.Name, Version: m.Version, Role: string(m.Role), Status: m.Status,
		PublicIPv4: m.PublicIPv4, CreatedAt: m.CreatedAt.UTC().Format(time.RFC3339),
		Health: health(m),
	}
}

// toJSONs never returns nil: an empty list prints as [].
func toJSONs(ms []deploy.Member) []*dropletJSON {
	out := make([]*dropletJSON, 0, len(ms))
	for i := range ms {
		out = append(out, toJSON(&ms[i]))
	}
	return out
}

// phaseJSON is one step of a command and how long it took.
type phaseJSON struct {
	Name    string  `json:"phase"`   // what was done, for people ("waiting for cloud-init on ...")
	Seconds float64 `json:"seconds"` // how long it took
}

func phasesJSON(ps []deploy.Phase) []phaseJSON {
	out := make([]phaseJSON, len(ps))
	for i, p := range ps {
		out[i] = phaseJSON{p.Name, p.Duration.Seconds()}
	}
	return out
}

// transferJSON is an archive streamed from one droplet (or file) to
// another, checked by sha256 at both ends.
type transferJSON struct {
	From    string  `json:"from"`    // the droplet (or archive) it came from
	To      string  `json:"to"`      // the droplet it went to
	Bytes   int64   `json:"bytes"`   // uncompressed stream size
	SHA256  string  `json:"sha256"`  // of the stream, as all three parties hashed it
	Seconds float64 `json:"seconds"` // how long the transfer took
}

func toTransferJSON(t *deploy.Transfer) *transferJSON {
	if t == nil {
		return nil
	}
	return &transferJSON{From: t.From, To: t.To, Bytes: t.Bytes, SHA256: t.SHA256, Seconds: t.Duration.Seconds()}
}

// fileSumJSON is a file (or stream, or tar member) with its size and sha256.
type fileSumJSON struct {
	Name   string `json:"name,omitempty"` // tar members only
	Bytes  int64  `json:"bytes"`          // size
	SHA256 string `json:"sha256"`         // hex
}

// manifestJSON is a backup's manifest, as written beside the archive.
type manifestJSON struct {
	Format  string        `json:"format"`  // the manifest's layout: "fleet-backup 1"
	Project string        `json:"project"` // the project backed up
	Droplet string        `json:"droplet"` // the droplet backed up
	Version string        `json:"version"` // the release it ran
	Created string        `json:"created"` // RFC 3339 UTC
	Archive fileSumJSON   `json:"archive"` // the .tar.zst file
	Stream  fileSumJSON   `json:"stream"`  // the uncompressed stream, as the stack wrote it
	Entries []fileSumJSON `json:"entries"` // the stream's tar members; [] when it is not a tar
}

func toManifestJSON(m *deploy.Manifest) *manifestJSON {
	if m == nil {
		return nil
	}
	out := &manifestJSON{Format: m.Format, Project: m.Project, Droplet: m.Droplet, Version: m.Version, Created: rfc3339(m.Created),
		Archive: fileSumJSON(m.Archive), Stream: fileSumJSON(m.Stream), Entries: []fileSumJSON{}}
	for _, e := range m.Entries {
		out.Entries = append(out.Entries, fileSumJSON(e))
	}
	return out
}

// validateJSON is `fleet validate --json`.
type validateJSON struct {
	File   string   `json:"file"`   // the spec read (--file)
	Valid  bool     `json:"valid"`  // no problems
	Errors []string `json:"errors"` // each "file:line:col: message"; [] when valid
	// Error is the error object every failing command prints (with the
	// same problems, typed, in error.spec); absent when valid.
	Error *ErrorDetail `json:"error,omitempty"`
	// Region is the online check of the reserved IP's region; absent
	// when the spec is invalid (nothing was asked).
	Region *regionCheckJSON `json:"region_check,omitempty"`
}

// upJSON is `fleet up VERSION --json`.
type upJSON struct {
	Droplet *dropletJSON `json:"droplet"` // the candidate
	Resumed bool         `json:"resumed"` // an interrupted up of this version was picked up
	Phases  []phaseJSON  `json:"phases"`  // in order
	// Image is what the candidate was made from: a slug, or "NAME (image
	// ID)" for a snapshot; null when resumed.
	Image *string `json:"image"`
	// Baked is the bake up made first (image: bake, template changed); null otherwise.
	Baked *imageJSON `json:"baked"`
	// stack.build: local: compressed layer bytes sent from this machine,
	// and layers relayed from the live droplet instead; 0 otherwise.
	ShippedBytes int64 `json:"shipped_bytes"`
	ReusedLayers int   `json:"reused_layers"`
	// stack.build: local: SSH bytes between this machine and the droplets
	// while shipping (both ways, framing included), bytes the live droplet
	// sent the candidate over the private network, and how its layers
	// came: "vpc", "fleet" (through this machine) or "" (none did).
	LinkBytes    int64  `json:"link_bytes"`
	DropletBytes int64  `json:"droplet_bytes"`
	Relay        string `json:"relay"`
	// Data is the live droplet's data restored onto the candidate; null
	// without stack.data or a live droplet.
	Data *transferJSON `json:"data"`
	// DuplicatesDestroyed: candidates of this version left by an up killed
	// while its create was in flight; [] almost always.
	DuplicatesDestroyed []*dropletJSON `json:"duplicates_destroyed"`
}

func toUpJSON(res *deploy.UpResult) upJSON {
	out := upJSON{Droplet: toJSON(&res.Droplet), Resumed: res.Resumed, Phases: phasesJSON(res.Phases),
		ShippedBytes: res.ShippedBytes, ReusedLayers: res.ReusedLayers,
		LinkBytes: res.LinkBytes, DropletBytes: res.DropletBytes, Relay: res.Relay, Data: toTransferJSON(res.Data),
		DuplicatesDestroyed: toJSONs(res.Duplicates)}
	if res.Image != nil {
		s := res.Image.String()
		out.Image = &s
		if b := res.Image.Baked; b != nil {
			img := toImageJSON(b.Image, b.Hash, true)
			out.Baked = &img
		}
	}
	return out
}

// promoteJSON is `fleet promote --json`.
type promoteJSON struct {
	ReservedIP        string         `json:"reserved_ip"`         // the address now on Live
	Live              *dropletJSON   `json:"live"`                // the promoted droplet
	Previous          *dropletJSON   `json:"previous"`            // the droplet that was live; null on a first promote
	ReservedIPCreated bool           `json:"reserved_ip_created"` // this promote reserved the IP (reserved_ip: auto)
	Pruned            []*dropletJSON `json:"pruned"`              // previous droplets destroyed beyond keep
	Data              *transferJSON  `json:"data"`                // the final backup carried over; null without stack.data
	FreezeSeconds     float64        `json:"freeze_seconds"`      // writes frozen, freeze until the IP moved; 0 without stack.data
	// FreezeBudget is stack.data.freeze_budget in seconds and Window the
	// freeze window's phases (they sum to freeze_seconds); 0 and [] without a freeze.
	FreezeBudget float64      `json:"freeze_budget"`
	Window       []windowJSON `json:"window"`
	// AfterPromoteError: stack.after_promote failed (the promote stands); "" when it ran fine or there is none.
	AfterPromoteError string      `json:"after_promote_error"`
	Phases            []phaseJSON `json:"phases"`  // in order
	Resumed           bool        `json:"resumed"` // an interrupted promote had moved the IP; this one finished it
	// Held: writes the old live droplet held during the freeze and forwarded (stack.data.hold); null without.
	Held *deploy.Held `json:"held"`
}

func toPromoteJSON(res *deploy.PromoteResult) promoteJSON {
	return promoteJSON{ReservedIP: res.ReservedIP, Live: toJSON(&res.Live), Previous: toJSON(res.Previous),
		ReservedIPCreated: res.Created, Pruned: toJSONs(res.Pruned), Data: toTransferJSON(res.Data),
		FreezeSeconds: res.Freeze.Seconds(), FreezeBudget: res.FreezeBudget.Seconds(), Window: windowsJSON(res.Window),
		AfterPromoteError: res.AfterPromoteError, Phases: phasesJSON(res.Phases), Resumed: res.Resumed, Held: res.Held}
}

// windowJSON is one phase of the freeze window.
type windowJSON struct {
	Phase        string  `json:"phase"`         // freeze, writes (rollback), sync, health, unfreeze, forward (hold), move
	StartSeconds float64 `json:"start_seconds"` // when it began, after the freeze began (forward and move begin together)
	Seconds      float64 `json:"seconds"`       // how long it took
}

// windowsJSON never returns nil: no freeze prints as [].
func windowsJSON(ws []deploy.WindowPhase) []windowJSON {
	out := make([]windowJSON, 0, len(ws))
	for _, p := range ws {
		out = append(out, windowJSON{p.Name, p.Start.Seconds(), p.Duration.Seconds()})
	}
	return out
}

// rollbackJSON is `fleet rollback --json`. After an up it discarded the
// candidate (Destroyed set, the rest empty); after a promote it moved the
// IP back (Live set).
type rollbackJSON struct {
	Destroyed  *dropletJSON `json:"destroyed"`   // the unpromoted candidate destroyed; null after a promote
	ReservedIP string       `json:"reserved_ip"` // "" when a candidate was destroyed
	Live       *dropletJSON `json:"live"`        // the droplet live again; null when a candidate was destroyed
	Failed     *dropletJSON `json:"failed"`      // the droplet rolled back from, now failed; null if none
	// Writes made on Failed since its promote: 0 without stack.data, -1 unknown.
	Writes          int           `json:"writes"`
	WritesDiscarded bool          `json:"writes_discarded"` // --discard-writes dropped them
	Data            *transferJSON `json:"data"`             // the archive that carried them back; null when none went
	FreezeSeconds   float64       `json:"freeze_seconds"`   // writes frozen; 0 without stack.data
	FreezeBudget    float64       `json:"freeze_budget"`    // stack.data.freeze_budget in seconds; 0 without a freeze
	Window          []windowJSON  `json:"window"`           // the freeze window's phases; [] without a freeze
	AlreadyDone     bool          `json:"already_done"`     // the last rollback had already made Live live; nothing changed
	// Held: writes the droplet rolled back from held during the freeze and forwarded (stack.data.hold); null without.
	Held *deploy.Held `json:"held"`
}

func toRollbackJSON(res *deploy.RollbackResult) rollbackJSON {
	return rollbackJSON{Destroyed: toJSON(res.Destroyed), ReservedIP: res.ReservedIP, Live: toJSON(res.Live), Failed: toJSON(res.Failed),
		Writes: res.Writes, WritesDiscarded: res.Discarded, Data: toTransferJSON(res.Data), FreezeSeconds: res.Freeze.Seconds(),
		FreezeBudget: res.FreezeBudget.Seconds(), Window: windowsJSON(res.Window), AlreadyDone: res.AlreadyDone, Held: res.Held}
}

// statusJSON is `fleet status --json`.
type statusJSON struct {
	Project    string         `json:"project"`     // the spec's project
	ReservedIP *string        `json:"reserved_ip"` // null before the first promote (reserved_ip: auto)
	Droplets   []*dropletJSON `json:"droplets"`    // newest first, then bake droplets (role bake)
}

// historyJSON is `fleet history --json`: the droplet the journal was read
// from and its entries, oldest first.
type historyJSON struct {
	From    string             `json:"from"`    // the droplet the journal was read from
	Entries []historyEntryJSON `json:"entries"` // oldest first; the last --limit
}

// historyEntryJSON is one command of the audit journal (deploy.Entry).
type historyEntryJSON struct {
	ID            string  `json:"id"`                       // random, unique per entry
	Who           string  `json:"who"`                      // CI actor and run URL, git user, or user@host
	Command       string  `json:"command"`                  // "up", "image bake", ...
	Version       string  `json:"version,omitempty"`        // absent when the command has none
	Start         string  `json:"start"`                    // RFC 3339 UTC
	End           string  `json:"end"`                      // RFC 3339 UTC
	Outcome       string  `json:"outcome"`                  // ok, refused, failed, interrupted
	Exit          int     `json:"exit"`                     // its exit code
	Error         string  `json:"error,omitempty"`          // absent when it succeeded
	FreezeSeconds float64 `json:"freeze_seconds,omitempty"` // promote, rollback with stack.data; absent when 0
	Live          string  `json:"live,omitempty"`           // the live droplet afterwards, when known
}

func toHistoryJSON(from string, es []deploy.Entry) historyJSON {
	out := historyJSON{From: from, Entries: make([]historyEntryJSON, 0, len(es))}
	for _, e := range es {
		out.Entries = append(out.Entries, historyEntryJSON{ID: e.ID, Who: e.Who, Command: e.Command, Version: e.Version,
			Start: rfc3339(e.Start), End: rfc3339(e.End), Outcome: e.Outcome, Exit: e.Exit, Error: e.Error, FreezeSeconds: e.Freeze, Live: e.Live})
	}
	return out
}

// destroyedJSON is `fleet destroy --json` and `fleet prune --json`.
type destroyedJSON struct {
	Destroyed []*dropletJSON `json:"destroyed"` // as they were before; [] when nothing was
}

// imageJSON is a bake (a snapshot fleet-<project>-<hash>).
type imageJSON struct {
	ID        int      `json:"id"`                 // DigitalOcean's image ID
	Name      string   `json:"name"`               // fleet-<project>-<hash>
	Hash      string   `json:"hash"`               // 12 hex digits of sha256(template, base image)
	Current   bool     `json:"current"`            // the one up uses with image: bake
	Regions   []string `json:"regions"`            // regions it is in
	CreatedAt string   `json:"created_at"`         // RFC 3339 UTC
	SizeGB    float64  `json:"size_gigabytes"`     // stored size, billed per GB-month
	MinDiskGB int      `json:"min_disk_gigabytes"` // smallest disk a droplet from it needs
}

// bakeJSON is `fleet image bake --json`.
type bakeJSON struct {
	Image     imageJSON   `json:"image"`              // the bake
	BaseImage string      `json:"base_image"`         // the slug baked from
	Existing  bool        `json:"existing"`           // a bake of this hash was there: nothing baked
	Droplet   string      `json:"droplet"`            // the bake droplet; "" when existing
	Resumed   bool        `json:"resumed"`            // it was left by an interrupted bake
	Destroyed []string    `json:"droplets_destroyed"` // leftover bake droplets destroyed
	Deleted   []imageJSON `json:"snapshots_deleted"`  // snapshots of this hash replaced
	Phases    []phaseJSON `json:"phases"`             // in order
}

// imageListJSON is `fleet image list --json`.
type imageListJSON struct {
	CurrentHash string      `json:"current_hash"` // of the spec's template and base image now
	Images      []imageJSON `json:"images"`       // newest first
}

// imagePruneJSON is `fleet image prune --json`.
type imagePruneJSON struct {
	Deleted []imageJSON `json:"deleted"` // bakes deleted; [] when none
}

// backupJSON is `fleet backup --json`, with --verify, and --verify ARCHIVE.
type backupJSON struct {
	Archive string `json:"archive"` // the .tar.zst written, or checked (--verify ARCHIVE)
	// Manifest and Seconds describe the backup taken; null with --verify ARCHIVE.
	Manifest *manifestJSON `json:"manifest"`
	Seconds  *float64      `json:"seconds"`
	Verified bool          `json:"verified"` // --verify ran and passed (a failed verify is an error)
	// VerifyOutput is what stack.data.verify printed; null without --verify.
	VerifyOutput *string `json:"verify_output"`
}

func toBackupJSON(res *deploy.BackupResult) backupJSON {
	secs := res.Duration.Seconds()
	return backupJSON{Archive: res.Path, Manifest: toManifestJSON(res.Manifest), Seconds: &secs}
}

// restoreJSON is `fleet restore ARCHIVE --json`.
type restoreJSON struct {
	Droplet       *dropletJSON  `json:"droplet"`        // restored onto
	Manifest      *manifestJSON `json:"manifest"`       // the archive's
	Data          *transferJSON `json:"data"`           // archive → droplet
	FrozenSeconds float64       `json:"frozen_seconds"` // writes frozen (live droplet only; 0 otherwise)
}

func toRestoreJSON(res *deploy.RestoreResult) restoreJSON {
	return restoreJSON{Droplet: toJSON(&res.Droplet), Manifest: toManifestJSON(res.Manifest), Data: toTransferJSON(res.Transfer), FrozenSeconds: res.Frozen.Seconds()}
}

// initJSON is `fleet init --json`: what was written, and what to do next.
type initJSON struct {
	Dir     string         `json:"dir"`     // --dir as given ("." by default), not made absolute
	Project string         `json:"project"` // the project's name: --project, the existing spec's, or from the directory's name
	Files   []initFileJSON `json:"files"`   // every file fleet init looked after, in the order it wrote them
	// Secrets are the FLEET_SECRET_<NAME> variables the workflow passes
	// (the stack's secrets), sorted; [] without --ci, without a stack, or
	// when they could not be read (then a warning says so).
	Secrets []string `json:"secrets"`
	// Warnings are what the operator should know (a kept spec that does
	// not validate, a public key without its private half); [] when none.
	// They are also printed on stderr.
	Warnings []string `json:"warnings"`
	// NextSteps are shell lines for the operator, comments included
	// ("# ..." lines, "  # ..." tails), in order.
	NextSteps []string `json:"next_steps"`
}

// initFileJSON is one file and what fleet init did with it.
type initFileJSON struct {
	Path   string `json:"path"`           // relative to dir, with forward slashes
	Action string `json:"action"`         // created, kept (existed, left alone) or updated (.gitignore: lines appended)
	Note   string `json:"note,omitempty"` // for people (what was appended, what to do to renew it); absent when none
}

func toInitJSON(r *scaffold.Report, next []string) initJSON {
	out := initJSON{Dir: r.Dir, Project: r.Project, Files: []initFileJSON{},
		Secrets: nonNil(r.Secrets), Warnings: nonNil(r.Warnings), NextSteps: nonNil(next)}
	for _, f := range r.Files {
		out.Files = append(out.Files, initFileJSON{Path: filepath.ToSlash(f.Path), Action: string(f.Action), Note: f.Note})
	}
	return out
}

// versionJSON is `fleet version --json`.
type versionJSON struct {
	Version string `json:"version"` // the release tag, or "dev"
}

// localJSON is `fleet local start --json` and `fleet local status --json`.
// When Running is false only it is present.
type localJSON struct {
	Running bool   `json:"running"`           // the local cloud answers
	Started *bool  `json:"started,omitempty"` // this call started it; false: it was running (absent when not running)
	URL     string `json:"url,omitempty"`     // FLEET_API_URL
	Token   string `json:"token,omitempty"`   // DIGITALOCEAN_TOKEN for it (a local secret)
	PID     int    `json:"pid,omitempty"`     // its process; absent when not running
	Backend string `json:"backend,omitempty"` // docker or memory
	Log     string `json:"log,omitempty"`     // its log file
}

// localStopJSON is `fleet local stop --json`.
type localStopJSON struct {
	Stopped bool `json:"stopped"`       // false: it was not running
	PID     int  `json:"pid,omitempty"` // the process stopped
}

// localServeJSON is `fleet local serve --json`: one line once it listens.
type localServeJSON struct {
	URL     string `json:"url"`     // the API's base URL
	Backend string `json:"backend"` // docker or memory
	// SSHPort is the port the memory backend's droplets answer SSH on
	// (give it to fleet as FLEET_SSH_PORT); absent for docker (22).
	SSHPort int `json:"ssh_port,omitempty"`
}

// ErrorJSON is what a failed command prints on stdout with --json (the
// plain message still goes to stderr, and the exit code is the same):
//
//	{"error": {"message": "no API token: ...", "code": "config", "exit": 4}}
//
// validate adds the same object to its own report.
type ErrorJSON struct {
	Error ErrorDetail `json:"error"` // always there
}

// ErrorDetail is the error object. Message, Code and Exit are always
// there; the rest only when the error carries them (omitted otherwise).
type ErrorDetail struct {
	Message string `json:"message"` // as on stderr (a spec's problems one per line)
	Code    string `json:"code"`    // stable word for Exit (ExitCodeName)
	Exit    int    `json:"exit"`    // the process's exit code

	Droplet string `json:"droplet,omitempty"` // the droplet the failure is about (a failed deploy's candidate, a bake droplet, ...)
	Hint    string `json:"hint,omitempty"`    // what to do about it, for people

	Spec         *specErrorsJSON     `json:"spec,omitempty"`           // droplets.yaml problems (exit 3)
	Region       *regionErrorJSON    `json:"region,omitempty"`         // reserved IP and droplet in different regions (exit 5)
	Lock         *lockErrorJSON      `json:"lock,omitempty"`           // the project's lock is held, or was lost (exit 5)
	API          *apiErrorJSON       `json:"api,omitempty"`            // the API's answer (exit 7, or 4 for 401/403)
	RateLimit    *rateLimitJSON      `json:"rate_limit,omitempty"`     // a rate limit fleet would not wait out (exit 7)
	Timeout      *timeoutErrorJSON   `json:"timeout,omitempty"`        // a wait that ran out (exit 6)
	Action       *actionErrorJSON    `json:"action,omitempty"`         // a DigitalOcean action that ended errored
	WritesAtRisk *writesAtRiskJSON   `json:"writes_at_risk,omitempty"` // a rollback that would lose writes (exit 5)
	CloudInit    *cloudInitErrorJSON `json:"cloud_init,omitempty"`     // cloud-init failed on a droplet (exit 8)
	HostKey      *hostKeyErrorJSON   `json:"host_key,omitempty"`       // a droplet's SSH host key did not verify
	SSHAuth      *sshAuthErrorJSON   `json:"ssh_auth,omitempty"`       // the droplet accepted none of the keys offered
	Remote       *remoteExitJSON     `json:"remote,omitempty"`         // a command on a droplet failed
	Move         *moveErrorJSON      `json:"move,omitempty"`           // a reserved IP move that failed
	Checksum     *checksumErrorJSON  `json:"checksum,omitempty"`       // an archive changed on the way
	FreezeBudget *freezeBudgetJSON   `json:"freeze_budget,omitempty"`  // a promote or rollback that would overrun stack.data.freeze_budget (exit 5)
	// IncompatibleData: the release refused the data (restore exit 3); Droplet names it.
	IncompatibleData bool `json:"incompatible_data,omitempty"`
	// BakeDropletDestroyed: a failed bake destroyed its droplet (false: it is left, see hint).
	BakeDropletDestroyed *bool `json:"bake_droplet_destroyed,omitempty"`
}

// specErrorsJSON lists droplets.yaml's problems.
type specErrorsJSON struct {
	Total    int             `json:"total"`    // problems found; more than len(problems) when the list was cut at 100
	Problems []specErrorJSON `json:"problems"` // in file order
}

// specErrorJSON is one problem; line and col are 0 when it has no
// position (a file that cannot be read).
type specErrorJSON struct {
	File    string `json:"file"`    // droplets.yaml, or a file it names
	Line    int    `json:"line"`    // 1-based; 0: none
	Col     int    `json:"col"`     // 1-based; 0: none
	Message string `json:"message"` // without the position
}

// regionErrorJSON: DigitalOcean moves a reserved IP only within its region.
type regionErrorJSON struct {
	ReservedIP       string `json:"reserved_ip"`              // the project's
	ReservedIPRegion string `json:"reserved_ip_region"`       // its region
	Droplet          string `json:"droplet,omitempty"`        // promote, rollback: the droplet it would move to
	DropletRegion    string `json:"droplet_region,omitempty"` // and its region
	SpecRegion       string `json:"spec_region,omitempty"`    // up: droplet.region
}

// lockErrorJSON is the project's lock held by another fleet, or lost.
type lockErrorJSON struct {
	Project       string      `json:"project"`                  // whose lock
	Lost          bool        `json:"lost"`                     // this fleet lost it while running (else: another holds it)
	Holder        *holderJSON `json:"holder"`                   // who holds it; null when lost to a deleted key or a failed renewal
	WaitedSeconds float64     `json:"waited_seconds,omitempty"` // --lock-wait spent waiting
}

// holderJSON is a lock's record; times are the API server's clock.
type holderJSON struct {
	Who     string `json:"who"`           // CI actor, git user or user@host
	Host    string `json:"host"`          // its machine
	PID     int    `json:"pid"`           // its fleet process
	Command string `json:"command"`       // "up v1.2.0"
	Version string `json:"fleet_version"` // the holder's fleet
	Since   string `json:"since"`         // RFC 3339 UTC
	Renewed string `json:"renewed"`       // RFC 3339 UTC
}

type apiErrorJSON struct {
	Operation string `json:"operation"`            // what fleet was doing
	Status    int    `json:"status"`               // HTTP status
	Message   string `json:"message,omitempty"`    // the API's; absent when none
	RequestID string `json:"request_id,omitempty"` // for DigitalOcean's support; absent when none
}

type rateLimitJSON struct {
	Operation     string  `json:"operation"`            // what fleet was doing
	Status        int     `json:"status"`               // 429
	WaitSeconds   float64 `json:"wait_seconds"`         // what the API asked
	Until         string  `json:"until"`                // RFC 3339 UTC
	BudgetSeconds float64 `json:"budget_seconds"`       // the longest fleet would wait
	Why           string  `json:"why,omitempty"`        // why the budget was short
	RequestID     string  `json:"request_id,omitempty"` // absent when none
}

type timeoutErrorJSON struct {
	WaitingFor   string  `json:"waiting_for"`          // what fleet waited for
	AfterSeconds float64 `json:"after_seconds"`        // how long
	LastState    string  `json:"last_state,omitempty"` // the last state seen; absent when none
}

type actionErrorJSON struct {
	ID   int    `json:"id"`   // DigitalOcean's action ID
	Type string `json:"type"` // assign, snapshot, ...
	On   string `json:"on"`   // what it acted on
}

type writesAtRiskJSON struct {
	Writes int    `json:"writes"` // -1: unknown
	From   string `json:"from"`   // the live droplet that took them
	To     string `json:"to"`     // the droplet rollback would make live
}

type cloudInitErrorJSON struct {
	Droplet string   `json:"droplet"`          // where it ran
	Status  string   `json:"status,omitempty"` // cloud-init's own status word
	Exit    int      `json:"exit"`             // of `cloud-init status`; -1 when it did not finish
	Errors  []string `json:"errors"`           // cloud-init's error list
}

type hostKeyErrorJSON struct {
	Droplet string `json:"droplet"`             // the droplet dialled
	Address string `json:"address"`             // IP:port
	Problem string `json:"problem"`             // mismatch or not_pinned
	Pinned  string `json:"pinned,omitempty"`    // SHA256 fingerprint pinned (mismatch)
	Offered string `json:"presented,omitempty"` // SHA256 fingerprint the droplet presented (mismatch)
}

type sshAuthErrorJSON struct {
	User    string   `json:"user"`         // root
	Address string   `json:"address"`      // IP:port
	Keys    []string `json:"keys_offered"` // SHA256 fingerprints
}

type remoteExitJSON struct {
	Exit   int    `json:"exit"`             // -1 when killed by a signal
	Signal string `json:"signal,omitempty"` // e.g. TERM
}

type moveErrorJSON struct {
	ReservedIP string `json:"reserved_ip"`      // the address moved
	Outcome    string `json:"outcome"`          // not_moved (undone) or unknown (nothing else changed)
	Target     string `json:"target,omitempty"` // unknown: the droplet it was moving to
}

// freezeBudgetJSON is a switch refused (stage estimate) or aborted
// before the move because its freeze window would overrun the budget.
// What it says of the IP and the droplet was read back after the abort.
type freezeBudgetJSON struct {
	BudgetSeconds   float64       `json:"budget_seconds"`             // stack.data.freeze_budget
	Stage           string        `json:"stage"`                      // estimate (before the freeze), or the phase stopped: freeze, writes, sync, health, unfreeze
	ElapsedSeconds  float64       `json:"elapsed_seconds"`            // from the freeze to the abort; 0 for estimate
	EstimateSeconds float64       `json:"estimate_seconds,omitempty"` // estimate: the window expected
	Basis           string        `json:"basis,omitempty"`            // estimate: what it came from
	Window          []windowJSON  `json:"window"`                     // the phases run, the last one cut short; [] for estimate
	Sync            *transferJSON `json:"sync"`                       // the final sync as far as it got; null when it did not start
	ReservedIP      string        `json:"reserved_ip,omitempty"`      // the address that did not move; absent for estimate
	Holder          *string       `json:"holder"`                     // read back: the droplet the IP is on ("" none); null for estimate or when the read failed
	Droplet         string        `json:"droplet,omitempty"`          // the droplet that keeps the IP; absent for estimate
	Writable        *bool         `json:"writable"`                   // its unfreeze succeeded after the abort; null for estimate
}

func toFreezeBudgetJSON(e *deploy.FreezeBudgetError) *freezeBudgetJSON {
	out := &freezeBudgetJSON{BudgetSeconds: e.Budget.Seconds(), Stage: e.Stage, ElapsedSeconds: e.Elapsed.Seconds(),
		EstimateSeconds: e.Estimate.Seconds(), Basis: e.Basis, Window: windowsJSON(e.Window), Sync: toTransferJSON(e.Sync),
		ReservedIP: e.IP, Droplet: e.Droplet}
	if e.Droplet != "" {
		w := e.Unfrozen
		out.Writable = &w
		if e.HolderErr == nil {
			h := e.Holder
			out.Holder = &h
		}
	}
	return out
}

type checksumErrorJSON struct {
	What string `json:"what"` // what was compared
	Want string `json:"want"` // sha256 expected
	Have string `json:"have"` // sha256 found
}

// newErrorDetail is the error object of err, with every detail the
// errors in its chain carry.
func newErrorDetail(err error) ErrorDetail {
	code := exitCode(err)
	e := ErrorDetail{Message: err.Error(), Code: ExitCodeName(code), Exit: code}
	var (
		se  *spec.Errors
		de  *deploy.DeployError
		be  *deploy.BakeError
		rg  *deploy.RegionError
		he  *lock.HeldError
		le  *lock.LostError
		ae  *cloud.APIError
		rl  *cloud.RateLimitError
		te  *cloud.TimeoutError
		ac  *cloud.ActionError
		wr  *deploy.WritesAtRiskError
		ci  *remote.CloudInitError
		hk  *remote.HostKeyMismatchError
		np  *remote.NoPinnedKeyError
		au  *remote.AuthError
		rx  *remote.ExitError
		mu  *deploy.MoveUnknownError
		nm  *deploy.NotMovedError
		cs  *deploy.ChecksumError
		inc *deploy.IncompatibleDataError
		fb  *deploy.FreezeBudgetError
	)
	if errors.As(err, &se) {
		e.Spec = &specErrorsJSON{Total: se.Total(), Problems: []specErrorJSON{}}
		for _, p := range *se {
			if p.Omitted > 0 {
				continue // "N more problems": counted in Total, not a problem itself
			}
			e.Spec.Problems = append(e.Spec.Problems, specErrorJSON{File: p.File, Line: p.Line, Col: p.Col, Message: p.Msg})
		}
	}
	// The outermost error that names a droplet names it.
	if errors.As(err, &de) {
		e.Droplet, e.Hint = de.Droplet, de.Hint
	}
	if errors.As(err, &be) {
		if e.Droplet == "" {
			e.Droplet = be.Droplet
		}
		destroyed := be.Destroyed
		e.BakeDropletDestroyed = &destroyed
	}
	if errors.As(err, &rg) {
		e.Region = &regionErrorJSON{ReservedIP: rg.IP, ReservedIPRegion: rg.IPRegion, Droplet: rg.Droplet, DropletRegion: rg.DRegion, SpecRegion: rg.SpecRegion}
		if e.Hint == "" {
			e.Hint = rg.Fix
		}
	}
	if errors.As(err, &he) {
		e.Lock = &lockErrorJSON{Project: he.Project, Holder: toHolderJSON(&he.Holder), WaitedSeconds: he.Waited.Seconds()}
	}
	if errors.As(err, &le) {
		e.Lock = &lockErrorJSON{Project: le.Project, Lost: true, Holder: toHolderJSON(le.To)}
	}
	if errors.As(err, &ae) {
		e.API = &apiErrorJSON{Operation: ae.Op, Status: ae.Status, Message: ae.Message, RequestID: ae.RequestID}
	}
	if errors.As(err, &rl) {
		e.RateLimit = &rateLimitJSON{Operation: rl.Op, Status: rl.Status, WaitSeconds: rl.Wait.Seconds(), Until: rfc3339(rl.Until),
			BudgetSeconds: rl.Budget.Seconds(), Why: rl.Why, RequestID: rl.RequestID}
	}
	if errors.As(err, &te) {
		e.Timeout = &timeoutErrorJSON{WaitingFor: te.What, AfterSeconds: te.After.Seconds(), LastState: te.Last}
	}
	if errors.As(err, &ac) {
		e.Action = &actionErrorJSON{ID: ac.ID, Type: ac.Type, On: ac.On}
	}
	if errors.As(err, &wr) {
		e.WritesAtRisk = &writesAtRiskJSON{Writes: wr.Writes, From: wr.From, To: wr.To}
	}
	if errors.As(err, &ci) {
		e.CloudInit = &cloudInitErrorJSON{Droplet: ci.Droplet, Status: ci.Status, Exit: ci.Code, Errors: append([]string{}, ci.Errors...)}
		if e.Droplet == "" {
			e.Droplet = ci.Droplet
		}
	}
	if errors.As(err, &hk) {
		e.HostKey = &hostKeyErrorJSON{Droplet: hk.Droplet, Address: hk.Addr, Problem: "mismatch", Pinned: hk.Want, Offered: hk.Got}
	} else if errors.As(err, &np) {
		e.HostKey = &hostKeyErrorJSON{Droplet: np.Droplet, Address: np.Addr, Problem: "not_pinned"}
	}
	if e.HostKey != nil && e.Droplet == "" {
		e.Droplet = e.HostKey.Droplet
	}
	if errors.As(err, &au) {
		e.SSHAuth = &sshAuthErrorJSON{User: au.User, Address: au.Addr, Keys: append([]string{}, au.Keys...)}
	}
	if errors.As(err, &rx) {
		e.Remote = &remoteExitJSON{Exit: rx.Code, Signal: rx.Signal}
	}
	if errors.As(err, &mu) {
		e.Move = &moveErrorJSON{ReservedIP: mu.IP, Outcome: "unknown", Target: mu.Target}
	} else if errors.As(err, &nm) {
		e.Move = &moveErrorJSON{ReservedIP: nm.IP, Outcome: "not_moved"}
	}
	if errors.As(err, &fb) {
		e.FreezeBudget = toFreezeBudgetJSON(fb)
		if e.Droplet == "" {
			e.Droplet = fb.Droplet
		}
	}
	if errors.As(err, &cs) {
		e.Checksum = &checksumErrorJSON{What: cs.What, Want: cs.Want, Have: cs.Have}
	}
	if errors.As(err, &inc) {
		e.IncompatibleData = true
		if e.Droplet == "" {
			e.Droplet = inc.Droplet
		}
	}
	return e
}

func toHolderJSON(h *lock.Holder) *holderJSON {
	if h == nil {
		return nil
	}
	unix := func(s int64) string {
		if s == 0 {
			return ""
		}
		return rfc3339(time.Unix(s, 0))
	}
	return &holderJSON{Who: h.Who, Host: h.Host, PID: h.PID, Command: h.Cmd, Version: h.Version, Since: unix(h.Since), Renewed: unix(h.Renewed)}
}
