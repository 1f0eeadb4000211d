package remote

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{name: "one secret", secrets: []string{"hunter2"}, in: "password=hunter2\n", want: "password=[redacted]\n"},
		{name: "at the very end", secrets: []string{"hunter2"}, in: "password=hunter2", want: "password=[redacted]"},
		{name: "at the start, repeated", secrets: []string{"hunter2"}, in: "hunter2hunter2 hunter2", want: "[redacted][redacted] [redacted]"},
		{name: "several", secrets: []string{"s3cr3t-token", "db-pass"}, in: "token s3cr3t-token pass db-pass.", want: "token [redacted] pass [redacted]."},
		{name: "prefix only", secrets: []string{"hunter2"}, in: "hunter is hunte", want: "hunter is hunte"},
		{name: "longest wins", secrets: []string{"abc", "abcdef"}, in: "xabcdefy abcdey", want: "x[redacted]y [redacted]dey"},
		{name: "self overlap", secrets: []string{"aaa"}, in: "aaaa aa", want: "[redacted]a aa"},
		{name: "three bytes", secrets: []string{"xyz"}, in: "wxyz", want: "w[redacted]"},
		{name: "short values are left alone", secrets: []string{"", "a", "on"}, in: "a value, on", want: "a value, on"},
		{name: "no secrets", secrets: nil, in: "plain", want: "plain"},
		{name: "multibyte", secrets: []string{"pässwörd"}, in: "ü pässwörd ü", want: "ü [redacted] ü"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every way of cutting the input in two, and byte by byte.
			var splits [][]string
			for i := 0; i <= len(tc.in); i++ {
				splits = append(splits, []string{tc.in[:i], tc.in[i:]})
			}
			var bytewise []string
			for i := range len(tc.in) {
				bytewise = append(bytewise, tc.in[i:i+1])
			}
			splits = append(splits, bytewise)
			for _, writes := range splits {
				var out bytes.Buffer
				r := NewRedactor(&out, tc.secrets)
				for _, w := range writes {
					n, err := r.Write([]byte(w))
					if err != nil || n != len(w) {
						t.Fatalf("Write(%q) = %d, %v", w, n, err)
					}
				}
				if err := r.Flush(); err != nil {
					t.Fatal(err)
				}
				if out.String() != tc.want {
					t.Fatalf("writes %q: got %q, want %q", writes, out.String(), tc.want)
				}
			}
		})
	}
}

func TestRedactorHoldsBackLessThanASecret(t *testing.T) {
	secrets := []string{"correct horse battery staple", "tr0ub4dor"}
	var out bytes.Buffer
	r := NewRedactor(&out, secrets)
	text := strings.Repeat("the quick brown fox ", 100) + "correct horse battery"
	for i := 0; i < len(text); i += 7 {
		r.Write([]byte(text[i:min(i+7, len(text))]))
		if held := len(r.(*redactor).pending); held > len(secrets[0])-1 {
			t.Fatalf("holding %d bytes back, more than the longest secret - 1", held)
		}
	}
	if out.Len()+len(r.(*redactor).pending) != len(text) {
		t.Fatalf("wrote %d and held %d of %d bytes", out.Len(), len(r.(*redactor).pending), len(text))
	}
	r.Flush()
	if out.String() != text {
		t.Errorf("output differs from input with no complete secret in it")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestRedactorReportsWriteErrors(t *testing.T) {
	r := NewRedactor(failWriter{}, []string{"hunter2"})
	if _, err := r.Write([]byte("plain text\n")); err == nil {
		t.Error("Write hid the writer's error")
	}
	r.Write([]byte("hunt"))
	if err := r.Flush(); err == nil {
		t.Error("Flush hid the writer's error")
	}
}

// A multi-line secret is caught whole, and line by line when only part of
// it is shown (tail -n 5 key.pem), re-indented or with CRLF line ends.
func TestRedactorMultilineSecret(t *testing.T) {
	key := pemKey(t)
	lines := strings.Split(strings.TrimSuffix(key, "\n"), "\n")
	for _, tc := range []struct {
		name string
		in   string
	}{
		{name: "whole", in: "key:\n" + key + "done\n"},
		{name: "whole, no newline at the end", in: "key: " + strings.TrimSuffix(key, "\n")},
		{name: "its last lines", in: "tail:\n" + strings.Join(lines[len(lines)-5:], "\n") + "\ndone\n"},
		{name: "its first lines", in: strings.Join(lines[:4], "\n") + "\n"},
		{name: "one line inside other text", in: "x=" + lines[7] + ";\n"},
		{name: "indented, CRLF", in: "  " + strings.Join(lines[3:9], "\r\n  ") + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 7, 64, 65, 1 << 20} {
				var out bytes.Buffer
				r := NewRedactor(&out, []string{"unrelated", key})
				for b := tc.in; b != ""; {
					n := min(size, len(b))
					r.Write([]byte(b[:n]))
					b = b[n:]
				}
				r.Flush()
				if leaked := leakedLines(key, out.String()); len(leaked) > 0 {
					t.Errorf("writes of %d bytes: %d line(s) of the key shown, e.g. %q", size, len(leaked), leaked[0])
				}
				if !strings.Contains(out.String(), redacted) {
					t.Errorf("writes of %d bytes: nothing redacted in %q", size, out.String())
				}
			}
		})
	}
}
