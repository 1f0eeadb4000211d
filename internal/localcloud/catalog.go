package localcloud

import (
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
)

// The fixed catalog: regions, sizes and images the server knows.

type regionJSON struct {
	Name      string   `json:"name"`
	Slug      string   `json:"slug"`
	Features  []string `json:"features"`
	Available bool     `json:"available"`
	Sizes     []string `json:"sizes"`
}

type diskInfo struct {
	Type string `json:"type"`
	Size struct {
		Amount int    `json:"amount"`
		Unit   string `json:"unit"`
	} `json:"size"`
}

type sizeJSON struct {
	Slug         string     `json:"slug"`
	Memory       int        `json:"memory"`
	Vcpus        int        `json:"vcpus"`
	Disk         int        `json:"disk"`
	Transfer     float64    `json:"transfer"`
	PriceMonthly float64    `json:"price_monthly"`
	PriceHourly  float64    `json:"price_hourly"`
	Regions      []string   `json:"regions"`
	Available    bool       `json:"available"`
	Description  string     `json:"description"`
	DiskInfo     []diskInfo `json:"disk_info"`
}

var regionFeatures = []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"}

var regionNames = []struct{ slug, name string }{
	{"nyc3", "New York 3"},
	{"ams3", "Amsterdam 3"},
	{"fra1", "Frankfurt 1"},
	{"lon1", "London 1"},
	{"sfo3", "San Francisco 3"},
	{"sgp1", "Singapore 1"},
}

// sizeTable is the one list of sizes: what GET /v2/sizes lists, what a
// droplet create accepts, and what `fleet up --plan` prices. Slugs, specs
// and prices are DigitalOcean's published ones (USD; hourly is monthly /
// 672 rounded as DigitalOcean shows it).
var sizeTable = []struct {
	slug                  string
	memory, vcpus, disk   int
	transfer, monthly, hr float64
	description           string
}{
	{"s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4, 0.00595, "Basic"},
	{"s-1vcpu-1gb", 1024, 1, 25, 1, 6, 0.00893, "Basic"},
	{"s-1vcpu-2gb", 2048, 1, 50, 2, 12, 0.01786, "Basic"},
	{"s-2vcpu-2gb", 2048, 2, 60, 3, 18, 0.02679, "Basic"},
	{"s-2vcpu-4gb", 4096, 2, 80, 4, 24, 0.03571, "Basic"},
	{"s-4vcpu-8gb", 8192, 4, 160, 5, 48, 0.07143, "Basic"},
	{"s-8vcpu-16gb", 16384, 8, 320, 6, 96, 0.14286, "Basic"},
	{"s-1vcpu-1gb-amd", 1024, 1, 25, 1, 7, 0.01042, "Basic AMD"},
	{"s-1vcpu-2gb-amd", 2048, 1, 50, 2, 14, 0.02083, "Basic AMD"},
	{"s-2vcpu-2gb-amd", 2048, 2, 60, 3, 21, 0.03125, "Basic AMD"},
	{"s-2vcpu-4gb-amd", 4096, 2, 80, 4, 28, 0.04167, "Basic AMD"},
	{"s-4vcpu-8gb-amd", 8192, 4, 160, 5, 56, 0.08333, "Basic AMD"},
	{"s-1vcpu-1gb-intel", 1024, 1, 25, 1, 7, 0.01042, "Basic Intel"},
	{"s-1vcpu-2gb-intel", 2048, 1, 50, 2, 14, 0.02083, "Basic Intel"},
	{"s-2vcpu-4gb-intel", 4096, 2, 80, 4, 28, 0.04167, "Basic Intel"},
	{"g-2vcpu-8gb", 8192, 2, 25, 4, 63, 0.09375, "General Purpose"},
	{"c-2", 4096, 2, 25, 4, 42, 0.0625, "CPU-Optimized"},
	{"m-2vcpu-16gb", 16384, 2, 50, 4, 84, 0.125, "Memory-Optimized"},
}

func regionSlugs() []string {
	s := make([]string, len(regionNames))
	for i, r := range regionNames {
		s[i] = r.slug
	}
	return s
}

func sizeSlugs() []string {
	s := make([]string, len(sizeTable))
	for i, z := range sizeTable {
		s[i] = z.slug
	}
	return s
}

func findRegion(slug string) (regionJSON, bool) {
	for _, r := range regionNames {
		if r.slug == slug {
			return regionJSON{Name: r.name, Slug: r.slug, Features: regionFeatures, Available: true, Sizes: sizeSlugs()}, true
		}
	}
	return regionJSON{}, false
}

func allRegions() []regionJSON {
	out := make([]regionJSON, 0, len(regionNames))
	for _, r := range regionNames {
		reg, _ := findRegion(r.slug)
		out = append(out, reg)
	}
	return out
}

func findSize(slug string) (sizeJSON, bool) {
	for _, z := range sizeTable {
		if z.slug == slug {
			d := diskInfo{Type: "local"}
			d.Size.Amount, d.Size.Unit = z.disk, "gib"
			return sizeJSON{
				Slug: z.slug, Memory: z.memory, Vcpus: z.vcpus, Disk: z.disk,
				Transfer: z.transfer, PriceMonthly: z.monthly, PriceHourly: z.hr,
				Regions: regionSlugs(), Available: true, Description: z.description,
				DiskInfo: []diskInfo{d},
			}, true
		}
	}
	return sizeJSON{}, false
}

func allSizes() []sizeJSON {
	out := make([]sizeJSON, 0, len(sizeTable))
	for _, z := range sizeTable {
		s, _ := findSize(z.slug)
		out = append(out, s)
	}
	return out
}

type imageJSON struct {
	ID            int      `json:"id"`
	Name          string   `json:"name"`
	Type          string   `json:"type"`
	Distribution  string   `json:"distribution"`
	Slug          *string  `json:"slug"`
	Public        bool     `json:"public"`
	Regions       []string `json:"regions"`
	CreatedAt     string   `json:"created_at"`
	MinDiskSize   int      `json:"min_disk_size"`
	SizeGigabytes float64  `json:"size_gigabytes"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Status        string   `json:"status"`
	ErrorMessage  string   `json:"error_message"`
}

// distImage is an image of the distribution catalogue.
type distImage struct {
	id           int
	slug, name   string
	distribution string
	created      string
	minDisk      int
	sizeGB       float64
}

// distImages are the distribution images DigitalOcean offers (slugs as
// DigitalOcean spells them; ids, dates and sizes made up in its style).
// Which of them a backend can boot is the backend's business
// (ImageChecker): the Docker backend boots every Debian slug.
var distImages = []distImage{
	{194582361, "debian-13-x64", "13 x64", "Debian", "2025-08-12T15:21:44Z", 7, 0.93},
	{163847210, "debian-12-x64", "12 x64", "Debian", "2024-11-04T18:02:11Z", 7, 0.87},
	{170201384, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", "2025-02-27T16:40:05Z", 7, 2.44},
	{162713944, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", "2024-10-01T14:55:31Z", 7, 2.36},
	{191034577, "fedora-42-x64", "42 x64", "Fedora", "2025-04-16T09:12:40Z", 7, 1.28},
	{178364019, "rockylinux-9-x64", "9 x64", "Rocky Linux", "2025-03-18T11:07:52Z", 10, 1.62},
	{176520036, "centos-stream-9-x64", "Stream 9 x64", "CentOS", "2025-03-03T13:48:19Z", 10, 1.71},
}

// findDistImage finds a distribution image by slug or id (as a string).
func findDistImage(ref string) (distImage, bool) {
	for _, d := range distImages {
		if d.slug == ref || strconv.Itoa(d.id) == ref {
			return d, true
		}
	}
	return distImage{}, false
}

func (d distImage) json() imageJSON {
	slug := d.slug
	return imageJSON{
		ID: d.id, Name: d.name, Type: "base", Distribution: d.distribution, Slug: &slug,
		Public: true, Regions: regionSlugs(), CreatedAt: d.created, MinDiskSize: d.minDisk,
		SizeGigabytes: d.sizeGB, Description: d.distribution + " " + d.name, Tags: []string{},
		Status: "available",
	}
}

var distributions = []struct{ prefix, name string }{
	{"ubuntu", "Ubuntu"}, {"debian", "Debian"}, {"fedora", "Fedora"}, {"centos", "CentOS"},
	{"rockylinux", "Rocky Linux"}, {"freebsd", "FreeBSD"},
}

// imageFor describes the image a droplet of unknown origin (adopted from
// a backend, or from an old state file) was made from: a catalogue image
// if it is one, else a made-up one named by ref.
func imageFor(slug string) imageJSON {
	if d, ok := findDistImage(slug); ok {
		return d.json()
	}
	h := fnv.New32a()
	h.Write([]byte(slug))
	img := imageJSON{
		ID: int(h.Sum32()%90000000) + 10000000, Name: slug, Type: "base", Distribution: "Unknown",
		Public: true, Regions: regionSlugs(), CreatedAt: "2024-04-25T00:00:00Z",
		MinDiskSize: 7, SizeGigabytes: 2.36, Description: slug, Tags: []string{}, Status: "available",
	}
	s := slug
	img.Slug = &s
	for _, d := range distributions {
		if strings.HasPrefix(slug, d.prefix) {
			img.Distribution = d.name
		}
	}
	sort.Strings(img.Regions)
	return img
}
