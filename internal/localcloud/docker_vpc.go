package localcloud

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// The Docker backend's VPCs: one internal Docker network per region,
// fleet-vpc-<region>, on that region's default VPC range (vpcSubnet), with
// its gateway at .1. Every local cloud instance on the engine shares it, as
// droplet addresses are unique per engine (AddressTaken), not per instance.
// Each droplet container is connected to it with its private address before
// it starts: eth0 is the default bridge (the mirrors, the published
// "public" ports), eth1 the VPC, as on DigitalOcean. Internal: no route out,
// and Docker drops traffic between it and any other network, so droplets
// of other regions cannot reach it. The network outlives the droplets
// (nothing removes it; RemoveVPCNetworks does, once no container uses it).

// labelPrivateIPv4 records a droplet container's VPC address; labelVPC marks
// a network as the VPC of the region it names.
const (
	labelPrivateIPv4 = "fleet.private-ipv4"
	labelVPC         = "fleet.vpc"
)

// VPCNetworkName is the Docker network of region's default VPC.
func VPCNetworkName(region string) string { return "fleet-vpc-" + region }

// vpcRegion is the region whose VPC m joins: its own, or the first
// region's if it has none (a machine the server did not make).
func vpcRegion(m Machine) (string, error) {
	if m.Region == "" {
		return regionNames[0].slug, nil
	}
	if _, ok := findRegion(m.Region); !ok {
		return "", fmt.Errorf("docker backend: droplet %q: unknown region %q", m.Name, m.Region)
	}
	return m.Region, nil
}

// withPrivateIP is m with its PrivateIPv4 set (derived if it has none).
func withPrivateIP(m Machine) (Machine, error) {
	region, err := vpcRegion(m)
	if err != nil {
		return m, err
	}
	m.PrivateIPv4 = cmp.Or(m.PrivateIPv4, privateIPFor(region, m.PublicIPv4))
	if err := checkPrivateIP(region, m.PrivateIPv4); err != nil {
		return m, fmt.Errorf("docker backend: droplet %q: %w", m.Name, err)
	}
	return m, nil
}

// connectVPC connects container c (created, not yet started, or an older
// one made before VPCs) to m's region's VPC network with m's private
// address. Already connected with that address: nothing to do.
func (b *DockerBackend) connectVPC(ctx context.Context, c string, m Machine) error {
	m, err := withPrivateIP(m)
	if err != nil {
		return err
	}
	region, _ := vpcRegion(m)
	ip := m.PrivateIPv4
	network, err := b.ensureVPCNetwork(ctx, region)
	if err != nil {
		return err
	}
	out, err := docker(ctx, nil, "inspect", "--type", "container", "--format", "{{json .NetworkSettings.Networks}}", c)
	if err != nil {
		return fmt.Errorf("droplet %q: %w", m.Name, err)
	}
	var nets map[string]struct {
		IPAMConfig *struct{ IPv4Address string }
		IPAddress  string
	}
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		return fmt.Errorf("droplet %q: docker inspect %s: %w", m.Name, c, err)
	}
	if n, ok := nets[network]; ok {
		got := n.IPAddress
		if n.IPAMConfig != nil && n.IPAMConfig.IPv4Address != "" {
			got = n.IPAMConfig.IPv4Address
		}
		if got != ip {
			return fmt.Errorf("droplet %q: container %s is on %s with address %s, not its private address %s", m.Name, c, network, got, ip)
		}
		return nil
	}
	if _, err := docker(ctx, nil, "network", "connect", "--ip", ip, network, c); err != nil {
		var de *dockerError
		if errors.As(err, &de) && strings.Contains(strings.ToLower(de.stderr), "already in use") {
			return fmt.Errorf("droplet %q: its private address %s is taken on %s by another container: %w", m.Name, ip, network, err)
		}
		return fmt.Errorf("droplet %q: connecting %s to %s (%s): %w", m.Name, c, network, ip, err)
	}
	b.logf("%s: on %s as %s (droplet %d)", c, network, ip, m.ID)
	return nil
}

// ensureVPCNetwork returns region's VPC network, creating it if missing.
// A network of that name that is not this VPC, or a VPC range that
// overlaps a host network, is an error that says so.
func (b *DockerBackend) ensureVPCNetwork(ctx context.Context, region string) (string, error) {
	b.vpcMu.Lock()
	defer b.vpcMu.Unlock()
	name, subnet := VPCNetworkName(region), vpcSubnet(region)
	ok, err := checkVPCNetwork(ctx, name, region, subnet)
	if err != nil || ok {
		return name, err
	}
	if n, ok := overlappingHostNetwork(subnet, hostNetworks()); ok {
		return "", fmt.Errorf("docker backend: cannot make %s's VPC network %s: its range %s overlaps the host's network %s, so a droplet's private address could be a host's; free that range (the local cloud's VPCs use %s to %s)",
			region, name, subnet, n, vpcSubnet(regionNames[0].slug), vpcSubnet(regionNames[len(regionNames)-1].slug))
	}
	_, err = docker(ctx, nil, "network", "create", "--driver", "bridge", "--internal",
		"--subnet", subnet.String(), "--gateway", subnet.Addr().Next().String(),
		"--label", labelVPC+"="+region, name)
	if err != nil {
		var de *dockerError
		if errors.As(err, &de) && strings.Contains(de.stderr, "already exists") {
			// Another local cloud on the engine made it meanwhile.
			if ok, err := checkVPCNetwork(ctx, name, region, subnet); err != nil || ok {
				return name, err
			}
		}
		if errors.As(err, &de) && strings.Contains(strings.ToLower(de.stderr), "overlap") {
			return "", fmt.Errorf("docker backend: cannot make %s's VPC network %s: %s overlaps another Docker network (docker network ls; docker network inspect): %w", region, name, subnet, err)
		}
		return "", fmt.Errorf("docker backend: creating %s's VPC network %s (%s): %w", region, name, subnet, err)
	}
	b.logf("%s: created (%s's VPC, %s, internal)", name, region, subnet)
	return name, nil
}

// checkVPCNetwork says whether network name exists and is region's VPC
// (labelled, internal, on subnet); one that exists but is not is an error.
func checkVPCNetwork(ctx context.Context, name, region string, subnet netip.Prefix) (bool, error) {
	out, err := docker(ctx, nil, "network", "inspect", "--format", "{{json .}}", name)
	if err != nil {
		if isNoSuch(err) || strings.Contains(strings.ToLower(err.Error()), "not found") {
			return false, nil
		}
		return false, err
	}
	var n struct {
		Internal bool
		Labels   map[string]string
		IPAM     struct{ Config []struct{ Subnet string } }
	}
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return false, fmt.Errorf("docker network inspect %s: %w", name, err)
	}
	var subnets []string
	for _, c := range n.IPAM.Config {
		subnets = append(subnets, c.Subnet)
	}
	if n.Labels[labelVPC] != region || !n.Internal || len(subnets) != 1 || subnets[0] != subnet.String() {
		return false, fmt.Errorf("docker backend: network %s exists but is not %s's VPC (want label %s=%s, internal, subnet %s; it has label %q, internal %v, subnets %v): remove it (docker network rm %s)",
			name, region, labelVPC, region, subnet, n.Labels[labelVPC], n.Internal, subnets, name)
	}
	return true, nil
}

// RemoveVPCNetworks removes the VPC networks (of every region) that no
// container uses, and returns their names; one still in use is kept.
func RemoveVPCNetworks(ctx context.Context) ([]string, error) {
	out, err := docker(ctx, nil, "network", "ls", "--format", "{{.Name}}", "--filter", "label="+labelVPC)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range strings.Fields(out) {
		if _, err := docker(ctx, nil, "network", "rm", n); err != nil {
			var de *dockerError
			if errors.As(err, &de) && strings.Contains(de.stderr, "active endpoints") || isNoSuch(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n)
	}
	return removed, errors.Join(errs...)
}

// hostNetworks are the IPv4 networks of this network namespace: its
// interfaces' and its routing table's (the default route aside).
func hostNetworks() []netip.Prefix {
	var nets []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
					nets = append(nets, p.Masked())
				}
			}
		}
	}
	if f, err := os.Open("/proc/net/route"); err == nil {
		defer f.Close()
		nets = append(nets, parseRoutes(bufio.NewScanner(f))...)
	}
	return nets
}

// parseRoutes reads /proc/net/route: destination and mask are hex in host
// (little-endian) order. The default route and malformed lines are skipped.
func parseRoutes(sc *bufio.Scanner) []netip.Prefix {
	var nets []netip.Prefix
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(f[1])
		mask, err2 := hex.DecodeString(f[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		var d, m [4]byte
		binary.BigEndian.PutUint32(d[:], binary.LittleEndian.Uint32(dst))
		binary.BigEndian.PutUint32(m[:], binary.LittleEndian.Uint32(mask))
		bits, _ := net.IPMask(m[:]).Size()
		if bits == 0 {
			continue // default route, or a non-canonical mask
		}
		if p, err := netip.AddrFrom4(d).Prefix(bits); err == nil {
			nets = append(nets, p)
		}
	}
	return nets
}

// overlappingHostNetwork returns the first of host that overlaps p.
func overlappingHostNetwork(p netip.Prefix, host []netip.Prefix) (netip.Prefix, bool) {
	for _, h := range host {
		if h.Overlaps(p) {
			return h, true
		}
	}
	return netip.Prefix{}, false
}
