//go:build e2e

package blogkit

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// Gateway returns the IPv4 address of the host on Docker's default bridge
// network (172.17.0.1 on a default engine): where containers, and the
// containers inside a droplet through its NAT, reach servers on the host.
// It asks `docker network inspect bridge` and, if the engine reports no
// gateway, reads the docker0 interface. The address must be one of this
// host's, so servers can bind to it.
func Gateway(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "network", "inspect", "bridge",
		"--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("docker network inspect bridge: %w", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if ip := net.ParseIP(f); ip != nil && ip.To4() != nil {
			if !localAddress(ip) {
				return "", fmt.Errorf("the bridge gateway %s is not an address of this host", ip)
			}
			return ip.String(), nil
		}
	}
	ifc, err := net.InterfaceByName("docker0")
	if err != nil {
		return "", fmt.Errorf("docker's bridge network reports no gateway, and docker0: %w", err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("docker0 has no IPv4 address")
}

// localAddress says whether ip is assigned to an interface of this host.
func localAddress(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
