//go:build e2e

// Package blogkit holds the test servers and tools the blog stack's
// end-to-end suite drives: the Docker bridge gateway (Gateway), a test CA
// (NewCA), Pebble as the ACME server (StartPebble), mailpit as the SMTP
// smarthost (StartMailpit), a fake Akismet (StartAkismet), headless
// Chromium that trusts a given CA (NewChromium) and a release repository
// built from stacks/blog and stacks/blog-releases (ReleaseRepo).
//
// Where the servers listen: containers inside a droplet (certbot, postfix,
// the spam worker) reach the host through the droplet's NAT at the Docker
// bridge gateway (172.17.0.1 on a default engine), so Pebble's ACME
// listener, mailpit's SMTP and the fake Akismet bind to that address; the
// management and read-back APIs only the test uses bind to 127.0.0.1.
// Nothing binds to 0.0.0.0.
//
// Pebble, pebble-challtestsrv and mailpit are built with `go install
// pkg@version` (the module proxy) into a cache directory,
// $XDG_CACHE_HOME/fleet-e2e/bin/<name>@<version>/ (BinDir), once per
// version: see EnsureBinary.
//
// Pebble keeps its accounts and issuing CA in memory, so a suite shares
// one instance: from a top-level test whose subtests get it,
//
//	func TestBlogSite(t *testing.T) {
//		gw, _ := blogkit.Gateway(ctx)
//		pebble := blogkit.StartPebble(t, blogkit.PebbleOptions{ListenIP: gw,
//			Names: []string{"blog.test"}, ResolveTo: "127.0.0.200"})
//		mail := blogkit.StartMailpit(t, blogkit.MailpitOptions{ListenIP: gw})
//		akismet := blogkit.StartAkismet(t, gw+":0")
//		// stack.env: ACME_SERVER=pebble.DirectoryURL,
//		// ACME_CA_BUNDLE_B64=pebble.ACMECABundleB64(),
//		// SMTP_RELAY_HOST=mail.RelayHost(), SMTP_TLS_LEVEL=encrypt,
//		// AKISMET_URL=akismet.URL; secrets smtp_username=mail.Username,
//		// smtp_password=mail.Password, akismet_key=blogkit.AkismetTestKey.
//		t.Run("v1.0.0", func(t *testing.T) { ... })
//	}
//
// or from TestMain with LaunchPebble / LaunchMailpit / NewAkismet and
// their Close after m.Run. The Start* forms stop what they start in
// t.Cleanup; every process is also killed if the test binary dies.
//
// Every file has the e2e build tag, so `go test ./...` does not build it.
package blogkit
