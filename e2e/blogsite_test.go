//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// site talks to the blog the way a browser does: HTTPS to the site's name
// on the reserved IP, verifying the certificate against the given roots,
// with cookies (Django's session and CSRF token).
type site struct {
	host   string // blog.test
	client *http.Client
}

func newSite(host, ip string, roots *x509.CertPool, keepAlive bool) *site {
	jar, _ := cookiejar.New(nil)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return dialer.DialContext(ctx, network, net.JoinHostPort(ip, port))
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: host},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 4,
	}
	return &site{host: host, client: &http.Client{
		Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (s *site) url(path string) string { return "https://" + s.host + path }

func (s *site) do(req *http.Request) (int, http.Header, string, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

func (s *site) get(path string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, s.url(path), nil)
	code, _, body, err := s.do(req)
	return code, body, err
}

func (s *site) getJSON(path string, v any) error {
	code, body, err := s.get(path)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("GET %s: %d %.200s", path, code, body)
	}
	return json.Unmarshal([]byte(body), v)
}

func (s *site) csrf() string {
	u, _ := url.Parse(s.url("/"))
	for _, c := range s.client.Jar.Cookies(u) {
		if c.Name == "csrftoken" {
			return c.Value
		}
	}
	return ""
}

var (
	inputRE    = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	textareaRE = regexp.MustCompile(`(?is)<textarea\b[^>]*\bname="([^"]+)"[^>]*>(.*?)</textarea>`)
	attrRE     = regexp.MustCompile(`(?is)\b(name|value|type|checked)(?:="([^"]*)")?`)
)

// formFields scrapes a form's current values (inputs and textareas), as a
// browser would submit them untouched.
func formFields(page string) map[string]string {
	f := map[string]string{}
	for _, in := range inputRE.FindAllString(page, -1) {
		a := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(in, -1) {
			a[strings.ToLower(m[1])] = html.UnescapeString(m[2])
		}
		_, checked := a["checked"]
		switch {
		case a["name"] == "":
		case a["type"] == "submit", a["type"] == "file":
		case (a["type"] == "checkbox" || a["type"] == "radio") && !checked:
		case a["type"] == "checkbox" && a["value"] == "":
			f[a["name"]] = "on"
		default:
			f[a["name"]] = a["value"]
		}
	}
	for _, m := range textareaRE.FindAllStringSubmatch(page, -1) {
		f[m[1]] = html.UnescapeString(strings.TrimPrefix(m[2], "\n"))
	}
	return f
}

// login signs in to Django's admin.
func (s *site) login(user, password string) error {
	code, page, err := s.get("/admin/login/?next=/admin/")
	if err != nil || code != 200 {
		return fmt.Errorf("GET /admin/login/: %d %v", code, err)
	}
	f := formFields(page)
	f["username"], f["password"] = user, password
	f["next"] = "/admin/"
	code, _, body, err := s.postForm("/admin/login/?next=/admin/", f, nil)
	if err != nil {
		return err
	}
	if code != http.StatusFound {
		return fmt.Errorf("admin login: %d %.300s", code, body)
	}
	return nil
}

// postForm posts fields (and files, multipart) with the CSRF token and a
// same-origin Referer, as a browser would.
func (s *site) postForm(path string, fields map[string]string, files map[string]fileUpload) (int, http.Header, string, error) {
	var body bytes.Buffer
	ctype := "application/x-www-form-urlencoded"
	if files != nil {
		mw := multipart.NewWriter(&body)
		for k, v := range fields {
			mw.WriteField(k, v)
		}
		for k, f := range files {
			w, _ := mw.CreateFormFile(k, f.name)
			w.Write(f.data)
		}
		mw.Close()
		ctype = mw.FormDataContentType()
	} else {
		v := url.Values{}
		for k, x := range fields {
			v.Set(k, x)
		}
		body.WriteString(v.Encode())
	}
	req, _ := http.NewRequest(http.MethodPost, s.url(path), &body)
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Referer", s.url(path))
	req.Header.Set("Origin", "https://"+s.host)
	if t := s.csrf(); t != "" {
		req.Header.Set("X-CSRFToken", t)
	}
	return s.do(req)
}

type fileUpload struct {
	name string
	data []byte
}

// addPost creates a post through the admin's add form (logged in).
func (s *site) addPost(title, slug, body, tags string, files map[string]fileUpload) error {
	code, page, err := s.get("/admin/blog/post/add/")
	if err != nil || code != 200 {
		return fmt.Errorf("GET the post add form: %d %v", code, err)
	}
	f := formFields(page)
	delete(f, "_addanother")
	delete(f, "_continue")
	f["title"], f["slug"], f["body"], f["tags"] = title, slug, body, tags
	f["published"] = "on"
	f["_save"] = "Save"
	if files == nil {
		files = map[string]fileUpload{}
	}
	code, _, resp, err := s.postForm("/admin/blog/post/add/", f, files)
	if err != nil {
		return err
	}
	if code != http.StatusFound {
		errs := regexp.MustCompile(`(?s)<ul class="errorlist[^"]*"[^>]*>.*?</ul>`).FindAllString(resp, -1)
		return fmt.Errorf("admin add post %q: %d %v", title, code, errs)
	}
	return nil
}

// comment posts a comment as a visitor, JSON-style; it returns the status
// and the new comment's id (on 201).
func (s *site) comment(slug, author, email, text string) (int, int, error) {
	if s.csrf() == "" {
		if _, _, err := s.get("/posts/" + slug + "/"); err != nil {
			return 0, 0, err
		}
	}
	v := url.Values{"author": {author}, "email": {email}, "body": {text}, "csrfmiddlewaretoken": {s.csrf()}}
	req, _ := http.NewRequest(http.MethodPost, s.url("/posts/"+slug+"/comments/"), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Referer", s.url("/posts/"+slug+"/"))
	req.Header.Set("Origin", "https://"+s.host)
	req.Header.Set("X-CSRFToken", s.csrf())
	code, _, body, err := s.do(req)
	if err != nil || code != http.StatusCreated {
		return code, 0, err
	}
	var r struct {
		ID int `json:"id"`
	}
	json.Unmarshal([]byte(body), &r)
	return code, r.ID, nil
}

type postsJSON struct {
	Posts []struct {
		Slug        string   `json:"slug"`
		Title       string   `json:"title"`
		Tags        []string `json:"tags"`
		Image       *string  `json:"image"`
		Attachments []struct {
			Name string `json:"name"`
			URL  string `json:"url"`
		} `json:"attachments"`
	} `json:"posts"`
}

type commentsJSON struct {
	Comments []struct {
		ID     int    `json:"id"`
		Author string `json:"author"`
		Body   string `json:"body"`
	} `json:"comments"`
}

type healthJSON struct {
	OK                bool   `json:"ok"`
	PendingMigrations int    `json:"pending_migrations"`
	PendingComments   int    `json:"pending_comments"`
	Version           string `json:"version"`
}
