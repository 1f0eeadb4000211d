package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const usage = `usage:
  fleet-gate serve            serve nginx on $GATE_LISTEN (default :8480), control on 127.0.0.1:8481
  fleet-gate forward IP:PORT  forward to the droplet at IP:PORT (exit 4: it is not this site)
  fleet-gate status           the gate's state and figures`

const controlAddr = "127.0.0.1:8481"

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(64)
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(); err != nil {
			log.Fatalf("fleet-gate: %v", err)
		}
	case "forward":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(64)
		}
		os.Exit(control("/forward?to=" + url.QueryEscape(os.Args[2])))
	case "status":
		os.Exit(control("/status"))
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(64)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func serve() error {
	domain := env("SITE_DOMAIN", "localhost")
	app, err := url.Parse(env("GATE_APP", "http://app:8000"))
	if err != nil || app.Host == "" {
		return fmt.Errorf("GATE_APP %q is not a URL", os.Getenv("GATE_APP"))
	}
	g := New(env("GATE_FLAGS", "/run/fleet-flags"), app,
		env("GATE_CERT", "/etc/letsencrypt/live/"+domain+"/fullchain.pem"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	g.Start(ctx)

	srv := &http.Server{
		Addr:              env("GATE_LISTEN", ":8480"),
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	ctl := &http.Server{Addr: controlAddr, Handler: controlHandler(g, domain), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.ListenAndServe() }()
	go func() { errc <- ctl.ListenAndServe() }()
	log.Printf("fleet-gate: serving %s for %s, app %s", srv.Addr, domain, app)
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	ctl.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// controlHandler serves fleet-data (through `fleet-gate forward`), on
// loopback only: nginx never reaches it.
func controlHandler(g *Gate, host string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /forward", func(w http.ResponseWriter, r *http.Request) {
		fig, err := g.Forward(r.Context(), r.URL.Query().Get("to"), host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		io.WriteString(w, fig+"\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, g.Figures()+"\n")
	})
	return mux
}

// control calls the running gate; 4 = it refused (the message says why).
func control(path string) int {
	method := http.MethodGet
	if strings.HasPrefix(path, "/forward") {
		method = http.MethodPost
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	}}
	req, _ := http.NewRequest(method, "http://"+controlAddr+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleet-gate: the gate is not answering: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "fleet-gate: %s", b)
		return 4
	}
	os.Stdout.Write(b)
	return 0
}
