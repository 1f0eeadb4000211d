//go:build e2e

package blogkit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// MailpitOptions configures LaunchMailpit / StartMailpit.
type MailpitOptions struct {
	// Dir holds the database, the password file, the TLS files and the
	// log. StartMailpit defaults it to t.TempDir(); LaunchMailpit requires it.
	Dir string
	// ListenIP is where SMTP listens (default: Gateway, where postfix in a
	// droplet reaches it). Port is its port (0: a free one).
	ListenIP string
	Port     int
	// Username and Password are the only SMTP AUTH credentials accepted
	// (defaults: "blog-relay" and a random password).
	Username, Password string
	// TLSNames are extra names for the STARTTLS certificate, which always
	// names ListenIP, 127.0.0.1 and localhost.
	TLSNames []string
	// CA signs the STARTTLS certificate (default: a new CA in Dir/ca).
	CA *CA
	// Verbose turns on mailpit's SMTP conversation log.
	Verbose bool
}

// Mailpit is a running mailpit: an SMTP server requiring STARTTLS and SMTP
// AUTH (PLAIN or LOGIN) that keeps every message it accepts, read back
// through its HTTP API.
type Mailpit struct {
	SMTPAddr           string // ListenIP:port
	Username, Password string
	APIURL             string // http://127.0.0.1:port (the web UI and /api/v1)
	CA                 *CA    // signed the STARTTLS certificate
	TLSCertPEM         []byte // the certificate chain STARTTLS presents
	LogFile            string

	proc   *process
	client *http.Client
	mu     sync.Mutex
	bodies map[string]Message // full messages by ID (immutable in mailpit)
}

// Address is a mail address as mailpit's API gives it.
type Address struct {
	Name    string
	Address string
}

// Message is one message mailpit accepted: the list's summary fields and
// the message's bodies.
type Message struct {
	ID        string // mailpit's database ID
	MessageID string // the Message-ID header
	From      Address
	To, Cc    []Address
	Subject   string
	Snippet   string // up to 250 characters of the text
	Created   time.Time
	Username  string // the SMTP AUTH user that sent it
	Text      string
	HTML      string
}

// ToAddresses are the To addresses, bare.
func (m Message) ToAddresses() []string {
	var s []string
	for _, a := range m.To {
		s = append(s, a.Address)
	}
	return s
}

// StartMailpit launches mailpit (LaunchMailpit) and stops it when t's
// test ends; it fails t if mailpit does not start.
func StartMailpit(t testing.TB, opts MailpitOptions) *Mailpit {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := LaunchMailpit(ctx, opts)
	if err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// LaunchMailpit builds mailpit once (EnsureBinary) and starts it: SMTP on
// ListenIP with --smtp-require-starttls and --smtp-auth-file (a bcrypt
// htpasswd file with the one user), the web UI and API on 127.0.0.1, POP3
// on 127.0.0.1 (off anyway without a POP3 password file), no reverse DNS
// and no version check. It returns once both listeners answer. The caller
// must Close it.
func LaunchMailpit(ctx context.Context, opts MailpitOptions) (_ *Mailpit, err error) {
	if opts.Dir == "" {
		return nil, errors.New("mailpit: no Dir")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if opts.ListenIP == "" {
		if opts.ListenIP, err = Gateway(ctx); err != nil {
			return nil, err
		}
	}
	if opts.Username == "" {
		opts.Username = "blog-relay"
	}
	if opts.Password == "" {
		b := make([]byte, 12)
		rand.Read(b)
		opts.Password = hex.EncodeToString(b)
	}
	if strings.ContainsAny(opts.Username, ":\n") || strings.Contains(opts.Password, "\n") {
		return nil, errors.New("mailpit: the username cannot hold ':' or a newline, the password no newline")
	}
	bin, err := EnsureBinary(ctx, MailpitTool)
	if err != nil {
		return nil, err
	}
	if opts.CA == nil {
		if opts.CA, err = NewCA(filepath.Join(opts.Dir, "ca")); err != nil {
			return nil, err
		}
	}
	leaf, err := opts.CA.Issue(uniqueName("mailpit-smtp"), append([]string{opts.ListenIP, "127.0.0.1", "localhost"}, opts.TLSNames...)...)
	if err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	authFile := filepath.Join(opts.Dir, "smtp-auth")
	if err := os.WriteFile(authFile, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
		return nil, err
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePort(opts.ListenIP); err != nil {
			return nil, fmt.Errorf("mailpit: a free port on %s: %w", opts.ListenIP, err)
		}
	}
	httpPort, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	pop3Port, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	m := &Mailpit{
		SMTPAddr: net.JoinHostPort(opts.ListenIP, strconv.Itoa(port)),
		Username: opts.Username, Password: opts.Password,
		APIURL:     "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		CA:         opts.CA,
		TLSCertPEM: leaf.CertPEM,
		LogFile:    filepath.Join(opts.Dir, "mailpit.log"),
		client:     &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}},
		bodies:     map[string]Message{},
	}
	args := []string{
		"--smtp", m.SMTPAddr,
		"--listen", strings.TrimPrefix(m.APIURL, "http://"),
		"--pop3", net.JoinHostPort("127.0.0.1", strconv.Itoa(pop3Port)),
		"--database", filepath.Join(opts.Dir, "mailpit.db"),
		"--smtp-auth-file", authFile,
		"--smtp-tls-cert", leaf.CertFile, "--smtp-tls-key", leaf.KeyFile,
		"--smtp-require-starttls",
		"--smtp-disable-rdns",
		"--disable-version-check",
	}
	if opts.Verbose {
		args = append(args, "--verbose")
	}
	m.proc, err = startProcess("mailpit", bin, args, nil, opts.Dir, m.LogFile)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if err := m.proc.waitReady(ctx, 60*time.Second, httpCheck(m.client, m.APIURL+"/readyz")); err != nil {
		return nil, err
	}
	if err := m.proc.waitReady(ctx, 30*time.Second, dialCheck(m.SMTPAddr)); err != nil {
		return nil, err
	}
	return m, nil
}

// Close stops mailpit.
func (m *Mailpit) Close() {
	if m.proc != nil {
		m.proc.Stop()
	}
}

// RelayHost is SMTPAddr in postfix's relayhost syntax, "[ip]:port" (the
// blog stack's SMTP_RELAY_HOST).
func (m *Mailpit) RelayHost() string {
	host, port, _ := net.SplitHostPort(m.SMTPAddr)
	return "[" + host + "]:" + port
}

func (m *Mailpit) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("mailpit API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit API GET %s: %s %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// Messages lists every message mailpit holds, oldest first, with their
// bodies (GET /api/v1/messages, then /api/v1/message/{id} once per
// message).
func (m *Mailpit) Messages(ctx context.Context) ([]Message, error) {
	var list struct {
		Total    int
		Messages []struct {
			ID, MessageID, Subject, Snippet, Username string
			From                                      *Address
			To, Cc                                    []Address
			Created                                   time.Time
		} `json:"messages"`
	}
	if err := m.getJSON(ctx, "/api/v1/messages?limit=1000", &list); err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(list.Messages))
	for i := len(list.Messages) - 1; i >= 0; i-- { // the API lists newest first
		s := list.Messages[i]
		full, err := m.Message(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		full.Snippet, full.Created = s.Snippet, s.Created
		msgs = append(msgs, full)
	}
	return msgs, nil
}

// Message fetches one message by its mailpit ID.
func (m *Mailpit) Message(ctx context.Context, id string) (Message, error) {
	m.mu.Lock()
	msg, ok := m.bodies[id]
	m.mu.Unlock()
	if ok {
		return msg, nil
	}
	var full struct {
		ID, MessageID, Subject, Username, Text, HTML string
		From                                         *Address
		To, Cc                                       []Address
		Date                                         time.Time
	}
	if err := m.getJSON(ctx, "/api/v1/message/"+url.PathEscape(id), &full); err != nil {
		return Message{}, err
	}
	msg = Message{ID: full.ID, MessageID: full.MessageID, To: full.To, Cc: full.Cc, Subject: full.Subject,
		Username: full.Username, Text: full.Text, HTML: full.HTML, Created: full.Date}
	if full.From != nil {
		msg.From = *full.From
	}
	m.mu.Lock()
	m.bodies[id] = msg
	m.mu.Unlock()
	return msg, nil
}

// Raw is the message as received (headers and body).
func (m *Mailpit) Raw(ctx context.Context, id string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+"/api/v1/message/"+url.PathEscape(id)+"/raw", nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mailpit raw %s: %s", id, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// WaitMessage polls (every 200ms, backing off to 1s) until a message
// satisfies pred, and returns the first (oldest) that does, or ctx's
// error with what mailpit holds.
func (m *Mailpit) WaitMessage(ctx context.Context, pred func(Message) bool) (Message, error) {
	delay := 200 * time.Millisecond
	var last []Message
	for {
		msgs, err := m.Messages(ctx)
		if err == nil {
			last = msgs
			for _, msg := range msgs {
				if pred(msg) {
					return msg, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			var subj []string
			for _, msg := range last {
				subj = append(subj, fmt.Sprintf("%q from %s to %v", msg.Subject, msg.From.Address, msg.ToAddresses()))
			}
			return Message{}, fmt.Errorf("no matching message in mailpit (%s): %w; it holds %d: %s",
				m.LogFile, ctx.Err(), len(last), strings.Join(subj, "; "))
		case <-time.After(delay):
		}
		delay = min(delay*3/2, time.Second)
	}
}

// MailpitImage builds the Docker image tag (e.g. axllent/mailpit:latest)
// FROM debian:trixie-slim with the mailpit binary this package builds as
// /mailpit, laid out as the real image is (ENTRYPOINT /mailpit, sendmail
// links, ports 1025 SMTP, 1110 POP3 and 8025 HTTP, a HEALTHCHECK of
// `/mailpit readyz`). It stands in for the image from
// Docker Hub, which these machines cannot reach. An image of that tag
// already built by MailpitImage for the same mailpit version is kept.
func MailpitImage(ctx context.Context, tag string) error {
	const label = "fleet.e2e.mailpit"
	dockerfile := `FROM debian:trixie-slim
COPY mailpit /mailpit
RUN ln -sf /mailpit /usr/sbin/sendmail && ln -sf /mailpit /usr/local/bin/sendmail
EXPOSE 1025/tcp 1110/tcp 8025/tcp
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["/mailpit", "readyz"]
ENTRYPOINT ["/mailpit"]
`
	// The label names the mailpit version and this recipe.
	sum := sha256.Sum256([]byte(dockerfile))
	stamp := MailpitVersion + "/" + hex.EncodeToString(sum[:6])
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format",
		"{{index .Config.Labels \""+label+"\"}}", tag).Output()
	if err == nil && strings.TrimSpace(string(out)) == stamp {
		return nil
	}
	bin, err := EnsureBinary(ctx, MailpitTool)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mailpit-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "mailpit"), data, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	b, err := exec.CommandContext(ctx, "docker", "build", "-q", "--label", label+"="+stamp, "-t", tag, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker build %s: %v\n%s", tag, err, b)
	}
	return nil
}
