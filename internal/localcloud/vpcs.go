package localcloud

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// VPCs: as on DigitalOcean, every region has the account's default VPC,
// and a droplet created without vpc_uuid joins it. The local cloud has
// only those (no POST /v2/vpcs); their IDs derive from the account's
// vpcID, so they survive a restart.

type vpcJSON struct {
	ID          string `json:"id"`
	URN         string `json:"urn"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Region      string `json:"region"`
	IPRange     string `json:"ip_range"`
	Default     bool   `json:"default"`
	CreatedAt   string `json:"created_at"`
}

// vpcCreated is when the default VPCs say they were made (DigitalOcean
// made its accounts' default VPCs when VPCs launched).
var vpcCreated = time.Date(2020, 4, 7, 0, 0, 0, 0, time.UTC)

// msgInvalidVPC is DigitalOcean's 422 for a vpc_uuid it cannot use.
const msgInvalidVPC = "You specified invalid VPC parameters for Droplet creation."

// regionVPC is the ID of region's default VPC. s.mu must be held (or the
// server not shared yet).
func (s *Server) regionVPC(region string) string {
	sum := sha256.Sum256([]byte("fleet-local-vpc:" + s.vpcID + ":" + region))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// vpcPrefix is the first two octets of the private /20 of region's
// default VPC ("10.116" for the first region, as DigitalOcean's nyc3).
func vpcPrefix(region string) string {
	for i, r := range regionNames {
		if r.slug == region {
			return fmt.Sprintf("10.%d", 116+16*i)
		}
	}
	return "10.116"
}

// vpcSubnet is region's default VPC range, as a prefix.
func vpcSubnet(region string) netip.Prefix {
	return netip.MustParsePrefix(vpcPrefix(region) + ".0.0/20")
}

// checkPrivateIP says why ip cannot be a droplet's address in region's
// default VPC: not IPv4, outside the range, or its network, gateway or
// broadcast address.
func checkPrivateIP(region, ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return fmt.Errorf("private address %q is not an IPv4 address", ip)
	}
	p := vpcSubnet(region)
	gw := p.Addr().Next()
	bcast := netip.AddrFrom4([4]byte{p.Addr().As4()[0], p.Addr().As4()[1], p.Addr().As4()[2] | 0x0f, 0xff})
	switch {
	case !p.Contains(a):
		return fmt.Errorf("private address %s is outside %s's VPC range %s", ip, region, p)
	case a == p.Addr() || a == gw || a == bcast:
		return fmt.Errorf("private address %s is the network, gateway or broadcast address of %s's VPC range %s", ip, region, p)
	}
	return nil
}

// vpcs lists the default VPC of every region. s.mu must be held.
func (s *Server) vpcs() []vpcJSON {
	out := make([]vpcJSON, 0, len(regionNames))
	for _, r := range regionNames {
		id := s.regionVPC(r.slug)
		out = append(out, vpcJSON{
			ID: id, URN: "do:vpc:" + id, Name: "default-" + r.slug, Description: "",
			Region: r.slug, IPRange: vpcPrefix(r.slug) + ".0.0/20", Default: true,
			CreatedAt: timestamp(vpcCreated),
		})
	}
	return out
}

// findVPC is the VPC of id (any case), or false.
func (s *Server) findVPC(id string) (vpcJSON, bool) {
	for _, v := range s.vpcs() {
		if strings.EqualFold(v.ID, id) {
			return v, true
		}
	}
	return vpcJSON{}, false
}

func (s *Server) listVPCs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	all := s.vpcs()
	s.mu.Unlock()
	p, ok := paginate(w, r, len(all))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, listBody("vpcs", all[p.lo:p.hi], p))
}

func (s *Server) getVPC(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v, ok := s.findVPC(r.PathValue("id"))
	s.mu.Unlock()
	if !ok {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"vpc": v})
}
