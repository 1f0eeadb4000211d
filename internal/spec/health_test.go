package spec

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadHealth(t *testing.T) {
	paths := Health{Host: "a.example", Paths: []string{"/"}, Timeout: 30 * time.Second}
	tests := []struct {
		name, extra string
		want        *Health
		stackHealth *Health // Stack.Health when a stack is set
		err         string
	}{
		{"none", "", nil, nil, ""},
		{"top level without a stack", "health: {host: A.example, paths: [/], timeout: 30s}\n", &paths, nil, ""},
		{"top level with a stack", "stack: {dir: s}\nhealth: {host: a.example, paths: [/], timeout: 30s}\n", &paths, &paths, ""},
		{"stack.health still accepted", "stack: {dir: s, health: {host: a.example, paths: [/], timeout: 30s}}\n", &paths, &paths, ""},
		{"both", "stack: {dir: s, health: {paths: [/]}}\nhealth: {paths: [/]}\n", nil, nil, "18:9: health: stack.health (line 17) is also set; keep one of the two"},
		{"bad path", "health: {paths: [x]}\n", nil, nil, `17:18: health.paths[0]: "x" must start with / and hold no spaces`},
		{"unknown key", "health: {path: /}\n", nil, nil, "health"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, baseSpec+tt.extra, nil)
			s, err := Load("droplets.yaml")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Health, tt.want) {
				t.Fatalf("Health = %+v, want %+v", s.Health, tt.want)
			}
			if tt.stackHealth != nil && !reflect.DeepEqual(s.Stack.Health, *tt.stackHealth) {
				t.Fatalf("Stack.Health = %+v, want %+v", s.Stack.Health, *tt.stackHealth)
			}
		})
	}
}
