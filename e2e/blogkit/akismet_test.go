//go:build e2e

package blogkit

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAkismetContract(t *testing.T) {
	a := StartAkismet(t, "127.0.0.1:0")
	good := AkismetTestKey
	base := url.Values{"blog": {"https://blog.test"}, "user_ip": {"203.0.113.7"}, "comment_type": {"comment"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = append([]string(nil), vs...)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	for _, tc := range []struct {
		name      string
		path      string
		form      url.Values
		want      string
		wantDebug bool
	}{
		{"verify good api_key", "/1.1/verify-key", url.Values{"api_key": {good}, "blog": {"https://blog.test"}}, "valid", false},
		{"verify good key (old name)", "/1.1/verify-key", url.Values{"key": {good}, "blog": {"https://blog.test"}}, "valid", false},
		{"verify bad key", "/1.1/verify-key", url.Values{"api_key": {"nope"}, "blog": {"https://blog.test"}}, "invalid", true},
		{"verify no key", "/1.1/verify-key", url.Values{"blog": {"https://blog.test"}}, "invalid", true},
		{"check ham", "/1.1/comment-check", with("api_key", good, "comment_author", "Ann", "comment_content", "Nice post"), "false", false},
		{"check ham with key param", "/1.1/comment-check", with("key", good, "comment_content", "Nice post"), "false", false},
		{"check guaranteed spam author", "/1.1/comment-check", with("api_key", good, "comment_author", AkismetSpamAuthor, "comment_content", "hello"), "true", false},
		{"check spam marker", "/1.1/comment-check", with("api_key", good, "comment_content", "buy now "+AkismetSpamMarker), "true", false},
		{"check administrator is ham", "/1.1/comment-check", with("api_key", good, "user_role", AkismetHamRole, "comment_content", AkismetSpamMarker), "false", false},
		{"check bad key", "/1.1/comment-check", with("api_key", "nope", "comment_content", "x"), "invalid", true},
		{"check no blog", "/1.1/comment-check", with("api_key", good, "blog", ""), "Missing required field: blog.", true},
		{"check no user_ip", "/1.1/comment-check", with("api_key", good, "user_ip", ""), "Missing required field: user_ip.", true},
		{"submit spam", "/1.1/submit-spam", with("api_key", good), "Thanks for making the web a better place.", false},
		{"submit ham bad key", "/1.1/submit-ham", with("api_key", "nope"), "invalid", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.PostForm(a.URL+tc.path, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != tc.want {
				t.Errorf("%s %v = %d %q, want 200 %q", tc.path, tc.form, resp.StatusCode, b, tc.want)
			}
			if got := resp.Header.Get("X-akismet-debug-help") != ""; got != tc.wantDebug {
				t.Errorf("X-akismet-debug-help present = %v, want %v", got, tc.wantDebug)
			}
			if resp.Header.Get("X-akismet-guid") == "" {
				t.Errorf("no X-akismet-guid")
			}
		})
	}
	// GET is refused; calls are recorded with their forms.
	resp, err := http.Get(a.URL + "/1.1/comment-check")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET comment-check: %s", resp.Status)
	}
	checks := a.CommentChecks()
	if len(checks) != 9 { // 8 POSTs and the GET
		t.Fatalf("CommentChecks = %d, want 9", len(checks))
	}
	if c := checks[2]; c.Form.Get("comment_author") != AkismetSpamAuthor || c.Result != "true" || c.Key() != good {
		t.Errorf("recorded call: %+v", c)
	}
	// The key and marker can change.
	a.SetKey("other")
	a.SetSpamMarker("casino")
	for form, want := range map[string]string{
		with("api_key", "other", "comment_content", "casino night").Encode():    "true",
		with("api_key", "other", "comment_content", AkismetSpamMarker).Encode(): "false",
		with("api_key", good, "comment_content", "hi").Encode():                 "invalid",
	} {
		resp, err := http.Post(a.URL+"/1.1/comment-check", "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("after SetKey/SetSpamMarker, %s = %q, want %q", form, b, want)
		}
	}
	a.Reset()
	if n := len(a.Calls()); n != 0 {
		t.Errorf("Calls after Reset = %d", n)
	}
	if _, err := NewAkismet("0.0.0.0:0"); err == nil {
		t.Errorf("NewAkismet on 0.0.0.0 was allowed")
	}
}
