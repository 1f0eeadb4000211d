package cloudinit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// HostKey is a droplet's SSH host key, made by fleet so that it can pin the
// key before the droplet exists. Its private half travels in user_data
// (cloud-init's ssh_keys:), which the droplet's metadata service serves to
// anything on the droplet: the caller replaces the key after its first login.
type HostKey struct {
	PrivatePEM     string        // the private key, OpenSSH format (ssh.MarshalPrivateKey)
	Public         ssh.PublicKey // its public half
	AuthorizedLine string        // Public as "ssh-ed25519 AAAA...", no newline (known_hosts, .pub)
}

// NewHostKey makes an ed25519 host key.
func NewHostKey() (*HostKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return &HostKey{
		PrivatePEM:     string(pem.EncodeToMemory(block)),
		Public:         sshPub,
		AuthorizedLine: strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(sshPub)), "\n"),
	}, nil
}

// hostKeyKeys are the cloud-config keys Render sets for a HostKey; a
// template must leave them to fleet.
var hostKeyKeys = []string{"ssh_keys", "ssh_deletekeys", "ssh_genkeytypes", "ssh_publish_hostkeys"}

// injectHostKey adds k to out, a checked cloud-config: it edits the YAML
// node tree of the document after the header line and encodes it again.
func injectHostKey(out []byte, k *HostKey) ([]byte, error) {
	_, body, _ := bytes.Cut(out, []byte("\n"))
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("rendered user_data is not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind != yaml.DocumentNode {
		// Nothing but comments (which yaml.v3 drops then), or nothing at all.
		var comments []string
		for _, line := range strings.Split(string(body), "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "#") {
				comments = append(comments, line)
			}
		}
		doc = yaml.Node{Kind: yaml.DocumentNode, HeadComment: strings.Join(comments, "\n")}
	}
	if len(doc.Content) == 0 {
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("rendered user_data is not a YAML mapping")
	}
	var taken []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		key := root.Content[i]
		for _, name := range hostKeyKeys {
			if key.Kind == yaml.ScalarNode && key.Value == name {
				// +1: body starts after the header line.
				taken = append(taken, fmt.Sprintf("%s (line %d)", name, key.Line+1))
			}
		}
	}
	if len(taken) > 0 {
		return nil, fmt.Errorf("rendered user_data sets %s, but fleet sets the droplet's SSH host keys itself (it pins the key it injects): remove that from the template",
			strings.Join(taken, ", "))
	}

	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	keys := str("ssh_keys")
	keys.HeadComment = "# Added by fleet: this droplet's only SSH host key, which fleet pins\n" +
		"# (and replaces after its first login, as user_data is readable on the droplet)."
	private := str(k.PrivatePEM)
	private.Style = yaml.LiteralStyle
	root.Style &^= yaml.FlowStyle // a template's "{}" gets block content
	root.Content = append(root.Content,
		keys, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("ed25519_private"), private,
			str("ed25519_public"), str(k.AuthorizedLine),
		}},
		// Delete the image's keys. ssh_keys alone stops cloud-init generating
		// others; ssh_genkeytypes says so too, but [] fails cloud-init's
		// schema (minItems 1) and a boot with a schema warning is "degraded".
		str("ssh_deletekeys"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"},
		str("ssh_genkeytypes"), &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{str("ed25519")}},
		str("ssh_publish_hostkeys"), &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("enabled"), {Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"},
		}},
	)

	var buf bytes.Buffer
	buf.WriteString(Header + "\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding user_data with the host key: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding user_data with the host key: %w", err)
	}
	return buf.Bytes(), nil
}
