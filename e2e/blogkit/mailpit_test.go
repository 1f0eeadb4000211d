//go:build e2e

package blogkit

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func sendMail(addr string, tlsConf *tls.Config, auth smtp.Auth, from, to, subject, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("test.example"); err != nil {
		return err
	}
	if tlsConf != nil {
		if err := c.StartTLS(tlsConf); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s\r\n", from, to, subject, body)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func TestMailpit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gw, err := Gateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m := StartMailpit(t, MailpitOptions{ListenIP: gw})
	t.Logf("mailpit started in %v: SMTP %s, API %s", time.Since(start).Round(time.Millisecond), m.SMTPAddr, m.APIURL)
	if !strings.HasPrefix(m.SMTPAddr, gw+":") {
		t.Errorf("SMTPAddr %s is not on the gateway %s", m.SMTPAddr, gw)
	}
	host, _, _ := net.SplitHostPort(m.SMTPAddr)
	tlsConf := &tls.Config{RootCAs: m.CA.Pool(), ServerName: host}

	// STARTTLS + AUTH PLAIN: delivered, read back through the API.
	err = sendMail(m.SMTPAddr, tlsConf, smtp.PlainAuth("", m.Username, m.Password, host),
		"blog@blog.test", "admin@blog.test", "New comment on Hello", "Someone said hi.")
	if err != nil {
		t.Fatalf("send with STARTTLS and AUTH: %v", err)
	}
	msg, err := m.WaitMessage(ctx, func(m Message) bool { return m.Subject == "New comment on Hello" })
	if err != nil {
		t.Fatal(err)
	}
	if msg.From.Address != "blog@blog.test" || len(msg.To) != 1 || msg.To[0].Address != "admin@blog.test" ||
		!strings.Contains(msg.Text, "Someone said hi.") || msg.Username != m.Username {
		t.Errorf("message read back: %+v", msg)
	}
	if raw, err := m.Raw(ctx, msg.ID); err != nil || !strings.Contains(string(raw), "Subject: New comment on Hello") {
		t.Errorf("Raw: %v\n%s", err, raw)
	}

	// Refused: no AUTH; a wrong password; no STARTTLS.
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		auth smtp.Auth
		want string
	}{
		{"no auth", tlsConf, nil, "MAIL"},
		{"wrong password", tlsConf, smtp.PlainAuth("", m.Username, "wrong", host), "AUTH"},
		{"no starttls", nil, nil, "MAIL"},
	} {
		err := sendMail(m.SMTPAddr, tc.tls, tc.auth, "x@blog.test", "admin@blog.test", "refused "+tc.name, "x")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want a refusal at %s", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	msgs, err := m.Messages(ctx)
	if err != nil || len(msgs) != 1 {
		t.Errorf("Messages = %d, %v; want only the authenticated one", len(msgs), err)
	}
	// The certificate is checked: an unknown CA fails STARTTLS.
	if err := sendMail(m.SMTPAddr, &tls.Config{ServerName: host}, nil, "x@blog.test", "a@blog.test", "x", "x"); err == nil ||
		!strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("STARTTLS with the system roots: %v", err)
	}
}

// TestMailpitImage builds the stand-in image and runs it: the binary in
// debian:trixie-slim answers readyz.
func TestMailpitImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const tag = "fleet-e2e-mailpit-selftest:latest"
	start := time.Now()
	if err := MailpitImage(ctx, tag); err != nil {
		t.Fatal(err)
	}
	t.Logf("image built in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	start = time.Now()
	if err := MailpitImage(ctx, tag); err != nil {
		t.Fatal(err)
	}
	t.Logf("second call (image kept) %v", time.Since(start).Round(time.Millisecond))
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", "--entrypoint", "/mailpit", tag, "version", "--no-release-check").CombinedOutput()
	// go install sets no version: mailpit says "dev".
	if err != nil || !strings.Contains(string(out), "/mailpit") {
		t.Errorf("mailpit version in the image: %v\n%s", err, out)
	}
}
