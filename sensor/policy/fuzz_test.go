package policy

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// errorLine is the one shape every line of a Parse error has.
var errorLine = regexp.MustCompile(`^f\.yaml:[1-9][0-9]*:[1-9][0-9]*: [^\n]+ \([^\n]+\)$`)

func FuzzParse(f *testing.F) {
	f.Add([]byte(fullYAML))
	f.Add([]byte(defaultYAML))
	if example, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(example)
	}
	for _, tt := range errorCases {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatalf("policy returned with error %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "internal parser failure") {
				t.Fatalf("yaml.v3 panicked: %s", msg)
			}
			for _, line := range strings.Split(msg, "\n") {
				if !errorLine.MatchString(line) {
					t.Fatalf("malformed error line %q", line)
				}
			}
			return
		}
		checkInvariants(t, p)
		// What Parse accepted must survive being written out and read back unchanged.
		text := marshal(t, p)
		q, err := Parse("f.yaml", text)
		if err != nil {
			t.Fatalf("accepted policy does not re-validate: %v\n%s", err, text)
		}
		q.Hash, q.Source = p.Hash, p.Source
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the policy:\n got %+v\nwant %+v\n%s", q, p, text)
		}
	})
}

// TestRoundTrip runs the fuzz round trip on the known-good inputs, so go test covers it without -fuzz.
func TestRoundTrip(t *testing.T) {
	for _, p := range []*Policy{Default(), mustParse(t, fullYAML)} {
		checkInvariants(t, p)
		q, err := Parse("f.yaml", marshal(t, p))
		if err != nil {
			t.Fatal(err)
		}
		q.Hash, q.Source = p.Hash, p.Source
		if !reflect.DeepEqual(p, q) {
			t.Errorf("round trip:\n got %+v\nwant %+v", q, p)
		}
	}
}

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse("t.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkInvariants asserts what the kernel loader relies on in a parsed policy.
func checkInvariants(t *testing.T, p *Policy) {
	t.Helper()
	if p.Version != 1 || !strings.HasPrefix(p.Hash, "sha256:") || len(p.Hash) != len("sha256:")+64 {
		t.Fatalf("version %d hash %q", p.Version, p.Hash)
	}
	if len(p.Protect) == 0 {
		t.Fatal("nothing protected")
	}
	seen := map[string]bool{}
	rules := append(p.Rules(), p.ImageRules()...)
	for i, r := range rules {
		if r.ID != uint32(i+1) {
			t.Fatalf("rule %d has ID %d", i, r.ID)
		}
		if !strings.HasPrefix(r.Prefix, "/") || len(r.Prefix) > maxPrefixLen || strings.ContainsRune(r.Prefix, 0) {
			t.Fatalf("bad prefix %q", r.Prefix)
		}
		if i < len(p.Protect)+len(p.Exceptions)+len(p.ExecImagePaths) && !strings.HasSuffix(r.Prefix, "/") {
			t.Fatalf("directory prefix %q without trailing slash", r.Prefix)
		}
		// Path rules share one longest-prefix map, so their keys must differ.
		if r.Class != 0 {
			if seen[r.Prefix] {
				t.Fatalf("prefix %q twice in Rules", r.Prefix)
			}
			seen[r.Prefix] = true
		}
	}
	for i, a := range p.AllowedPorts {
		if a.Lo == 0 || a.Lo > a.Hi {
			t.Fatalf("port range %+v", a)
		}
		for _, b := range p.AllowedPorts[i+1:] {
			if a.Lo <= b.Hi && b.Lo <= a.Hi {
				t.Fatalf("ranges %+v and %+v overlap", a, b)
			}
		}
	}
}

// marshal writes p as a policy file with every key spelled out.
func marshal(t *testing.T, p *Policy) []byte {
	t.Helper()
	ports := make([]string, len(p.AllowedPorts))
	for i, r := range p.AllowedPorts {
		ports[i] = strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
	}
	type scope struct {
		Cgroups []string `yaml:"cgroups"`
	}
	type exec struct {
		ImagePaths   []string `yaml:"image_paths"`
		ImageFiles   []string `yaml:"image_files"`
		Interpreters []string `yaml:"interpreters"`
	}
	type net struct {
		AllowedPorts []string `yaml:"allowed_ports"`
		DenyBinds    bool     `yaml:"deny_binds"`
	}
	type reflex struct {
		Kill   bool `yaml:"kill"`
		Cordon bool `yaml:"cordon"`
	}
	type kernel struct {
		AllowSettings []string `yaml:"allow_settings"`
		AllowDevices  []string `yaml:"allow_devices"`
	}
	doc := struct {
		Version     int      `yaml:"version"`
		SealOnStart bool     `yaml:"seal_on_start"`
		Scope       scope    `yaml:"scope"`
		Protect     []string `yaml:"protect"`
		Exceptions  []string `yaml:"exceptions"`
		Exec        exec     `yaml:"exec"`
		Net         net      `yaml:"net"`
		Reflex      reflex   `yaml:"reflex"`
		Kernel      kernel   `yaml:"kernel"`
	}{
		p.Version, p.SealOnStart, scope{p.ScopeCgroups}, p.Protect, p.Exceptions,
		exec{p.ExecImagePaths, p.ExecImageFiles, p.Interpreters}, net{ports, p.DenyBinds},
		reflex{p.ReflexKill, p.ReflexCordon}, kernel{p.AllowSettings, p.AllowDevices},
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
