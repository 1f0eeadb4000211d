// Package remote runs commands and copies files on droplets over SSH, with pinned host keys.
//
// Every droplet has its own known_hosts file ($FLEET_HOME/known_hosts/<droplet>) in
// OpenSSH format, so the system client can reuse it:
//
//	ssh -o UserKnownHostsFile=<file> -o StrictHostKeyChecking=yes root@IP
//
// fleet never trusts a key on first use: the key is pinned before the droplet
// exists (it is generated locally and injected through user_data), and replaced
// only by [Client.RotateHostKey] over a session that was already verified.
//
// Secrets never travel in a command line or in the SSH environment; they go
// through a session's stdin or over SFTP ([Client.WriteFile]).
package remote
