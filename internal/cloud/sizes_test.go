package cloud

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// Sizes walks every page of /v2/sizes (a small page size forces several)
// and keeps DigitalOcean's prices; the server's traffic passes the OpenAPI
// contract (newEnvWith's cleanup).
func TestSizes(t *testing.T) {
	for _, pageSize := range []int{3, 200} {
		e := newEnv(t, "", func(c *Config) { c.PageSize = pageSize })
		sizes, err := e.c.Sizes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for slug, want := range map[string]Price{
			"s-1vcpu-512mb-10gb": {4, 0.00595},
			"s-1vcpu-1gb":        {6, 0.00893},
			"s-1vcpu-2gb":        {12, 0.01786},
			"s-2vcpu-2gb":        {18, 0.02679},
			"s-2vcpu-4gb":        {24, 0.03571},
			"s-4vcpu-8gb":        {48, 0.07143},
		} {
			if got, ok := sizes[slug]; !ok || got != want {
				t.Errorf("page size %d: %s = %+v (listed %v), want %+v", pageSize, slug, got, ok, want)
			}
		}
		pages := e.srv.Stats().Count("GET", "/v2/sizes")
		if wantPages := (len(sizes) + pageSize - 1) / pageSize; pages != wantPages {
			t.Errorf("page size %d: %d requests for %d sizes, want %d", pageSize, pages, len(sizes), wantPages)
		}
	}
}

// A size without a usable price, or an endless listing, is an error, not
// a plan priced at zero.
func TestSizesHostile(t *testing.T) {
	for _, tt := range []struct {
		name, body, want string
	}{
		{"negative price", `{"sizes":[{"slug":"s-1","price_monthly":-6,"price_hourly":0.1}],"links":{},"meta":{"total":1}}`, "no valid price"},
		{"no slug", `{"sizes":[{"slug":"","price_monthly":6,"price_hourly":0.1}],"links":{},"meta":{"total":1}}`, "no valid price"},
		{"endless pages", `{"sizes":[` + strings.Repeat(`{"slug":"s","price_monthly":1,"price_hourly":0.1},`, 199) + `{"slug":"s","price_monthly":1,"price_hourly":0.1}],"links":{"pages":{"prev":"http://x/v2/sizes?page=PAGE_PREV","next":"http://x/v2/sizes?page=PAGE_NEXT"}},"meta":{"total":99999}}`, "more than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				page, _ := strconv.Atoi(r.URL.Query().Get("page"))
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(strings.NewReplacer("PAGE_NEXT", strconv.Itoa(page+1), "PAGE_PREV", strconv.Itoa(page-1)).Replace(tt.body)))
			}))
			defer hs.Close()
			c, err := New(Config{Token: "t", APIURL: hs.URL, RetryMax: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if _, err := c.Sizes(ctx); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
