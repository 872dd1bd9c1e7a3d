package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fullYAML sets every key to something other than its default.
const fullYAML = `version: 1
seal_on_start: true
scope:
  cgroups: [/drift/host1, /drift/host2/]
protect: [/, /var/lib/app]
exceptions:
  - /var
  - /tmp/
exec:
  image_paths: [/usr, /opt/app/]
  image_files: [/usr/local/libexec/check]
net:
  allowed_ports: [22, "8000-8080", "9100"]
  deny_binds: false
reflex:
  kill: true
  cordon: true
`

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestParseFull(t *testing.T) {
	got, err := Parse("full.yaml", []byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Version:        1,
		SealOnStart:    true,
		ScopeCgroups:   []string{"/drift/host1", "/drift/host2"},
		Protect:        []string{"/", "/var/lib/app"},
		Exceptions:     []string{"/var", "/tmp"},
		ExecImagePaths: []string{"/usr", "/opt/app"},
		ExecImageFiles: []string{"/usr/local/libexec/check"},
		Interpreters:   DefaultInterpreters,
		AllowedPorts:   []PortRange{{22, 22}, {8000, 8080}, {9100, 9100}},
		DenyBinds:      false,
		ReflexKill:     true,
		ReflexCordon:   true,
		AllowSettings:  []string{},
		AllowDevices:   []string{},
		Hash:           sha(fullYAML),
		Source:         "full.yaml",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestDefaults(t *testing.T) {
	d := Default()
	want := &Policy{
		Version:        1,
		ScopeCgroups:   []string{},
		Protect:        []string{"/"},
		Exceptions:     []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp", "/var/log"},
		ExecImagePaths: []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt"},
		ExecImageFiles: []string{},
		Interpreters:   DefaultInterpreters,
		AllowedPorts:   []PortRange{},
		DenyBinds:      true,
		AllowSettings:  []string{},
		AllowDevices:   []string{},
		Hash:           sha(defaultYAML),
		Source:         "(default)",
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Default:\n got %+v\nwant %+v", d, want)
	}
	// Omitted keys take the same defaults as the canonical text spells out.
	min, err := Parse("min.yaml", []byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want.Hash, want.Source = sha("version: 1\n"), "min.yaml"
	if !reflect.DeepEqual(min, want) {
		t.Errorf("version only:\n got %+v\nwant %+v", min, want)
	}
	// Default returns a fresh copy each time.
	d.Protect[0] = "/changed"
	if d2 := Default(); d2.Protect[0] != "/" {
		t.Errorf("Default shares state between calls: %+v", d2)
	}
}

func TestPartialDefaults(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(*Policy) bool
	}{
		{"default exceptions follow protect", "version: 1\nprotect: [/var]\n", func(p *Policy) bool {
			return reflect.DeepEqual(p.Exceptions, []string{"/var/tmp", "/var/log"})
		}},
		{"no default exception equal to protect", "version: 1\nprotect: [/tmp, /etc]\n", func(p *Policy) bool {
			return len(p.Exceptions) == 0
		}},
		{"empty exceptions", "version: 1\nexceptions: []\n", func(p *Policy) bool {
			return p.Exceptions != nil && len(p.Exceptions) == 0
		}},
		{"net without deny_binds", "version: 1\nnet:\n  allowed_ports: [22]\n", func(p *Policy) bool {
			return p.DenyBinds && p.PortAllowed(22)
		}},
		{"reflex kill only", "version: 1\nreflex:\n  kill: true\n", func(p *Policy) bool {
			return p.ReflexKill && !p.ReflexCordon
		}},
		{"empty sections", "version: 1\nscope: {}\nexec: {}\nnet: {}\nreflex: {}\n", func(p *Policy) bool {
			d := Default()
			p.Hash, p.Source = d.Hash, d.Source
			return reflect.DeepEqual(p, d)
		}},
		{"booleans in any case", "version: 1\nseal_on_start: True\nreflex:\n  cordon: TRUE\n", func(p *Policy) bool {
			return p.SealOnStart && p.ReflexCordon
		}},
		{"explicit document markers", "---\nversion: 1\n...\n", func(p *Policy) bool { return p.Version == 1 }},
		{"nested protect inside an exception", "version: 1\nexceptions: [/var]\nprotect: [/, /var/lib/app]\n", func(p *Policy) bool {
			return len(p.Rules()) == 3
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(p) {
				t.Errorf("unexpected policy %+v", p)
			}
		})
	}
}

// errorCases each hold one mistake and the exact error Parse must give for it.
var errorCases = []struct {
	name, in, want string
}{
	// The document.
	{"empty file", "", `p.yaml:1:1: empty policy file (want at least "version: 1")`},
	{"comments only", "# nothing\n", `p.yaml:1:1: empty policy file (want at least "version: 1")`},
	{"empty document", "---\n", `p.yaml:1:1: empty policy file (want at least "version: 1")`},
	{"multiple documents", "version: 1\n---\nversion: 1\n", `p.yaml:2:1: multiple YAML documents (want exactly one; remove this ---)`},
	{"second document broken", "version: 1\n---\n[\n", `p.yaml:4:1: invalid YAML: did not find expected node content (check indentation, quoting and brackets)`},
	{"unclosed flow list", "version: [1\n", `p.yaml:2:1: invalid YAML: did not find expected ',' or ']' (check indentation, quoting and brackets)`},
	{"mapping value in value", "version: 1\nprotect: a: b\n", `p.yaml:2:1: invalid YAML: mapping values are not allowed in this context (check indentation, quoting and brackets)`},
	{"bad indentation", "version: 1\nexec:\n  - x\n b: 1\n", `p.yaml:4:1: invalid YAML: did not find expected key (check indentation, quoting and brackets)`},
	{"tab indentation", "\tversion: 1\n", `p.yaml:1:1: invalid YAML: found character that cannot start any token (check indentation, quoting and brackets)`},
	{"unterminated string", "version: 1\nprotect: [\"/x]\n", `p.yaml:2:1: invalid YAML: found unexpected end of stream (check indentation, quoting and brackets)`},
	{"control character", "version: 1\x01\n", `p.yaml:1:11: control character U+0001 (want printable text; write it as an escape in a double-quoted string)`},
	{"invalid UTF-8", "version: 1\nprotect: [/\xff]\n", `p.yaml:2:12: invalid UTF-8 byte 0xff (want UTF-8 text)`},
	{"not a mapping", "- version: 1\n", `p.yaml:1:1: wrong type for the policy: got a list (want a mapping of keys, starting with version: 1)`},
	{"scalar document", "1\n", `p.yaml:1:1: wrong type for the policy: got the integer 1 (want a mapping of keys, starting with version: 1)`},

	// Keys.
	{"unknown top key", "version: 1\nprotcet: [/]\n", `p.yaml:2:1: unknown key "protcet" (want version, seal_on_start, scope, protect, exceptions, exec, net, reflex, kernel)`},
	{"unknown exec key", "version: 1\nexec:\n  image_path: [/usr]\n", `p.yaml:3:3: unknown key "image_path" in exec (want image_paths, image_files, interpreters)`},
	{"unknown scope key", "version: 1\nscope:\n  cgroup: [/a]\n", `p.yaml:3:3: unknown key "cgroup" in scope (want cgroups)`},
	{"unknown net key", "version: 1\nnet:\n  ports: [22]\n", `p.yaml:3:3: unknown key "ports" in net (want allowed_ports, deny_binds)`},
	{"unknown reflex key", "version: 1\nreflex:\n  cordn: true\n", `p.yaml:3:3: unknown key "cordn" in reflex (want kill, cordon)`},
	{"duplicate key", "version: 1\nversion: 1\n", `p.yaml:2:1: duplicate key "version" (already set at 1:1; keep one)`},
	{"non-scalar key", "version: 1\n? [a]\n: 1\n", `p.yaml:2:3: wrong type for a key: got a list (want version, seal_on_start, scope, protect, exceptions, exec, net, reflex, kernel)`},
	{"merge key", "version: 1\n<<: {}\n", `p.yaml:2:1: unknown key "<<" (want version, seal_on_start, scope, protect, exceptions, exec, net, reflex, kernel)`},
	{"anchor", "version: &v 1\n", `p.yaml:1:10: anchor &v is not supported (write the value out where it is used)`},
	{"alias", "version: 1\nprotect: &p [/]\nexec:\n  image_paths: *p\n",
		"p.yaml:2:10: anchor &p is not supported (write the value out where it is used)\n" +
			"p.yaml:4:16: alias *p is not supported (write the value out)"},

	// version.
	{"missing version", "seal_on_start: true\n", `p.yaml:1:1: missing key "version" (want version: 1 as the first line)`},
	{"version 2", "version: 2\n", `p.yaml:1:10: unsupported version 2 (want 1)`},
	{"version string", "version: \"1\"\n", `p.yaml:1:10: wrong type for version: got the string "1" (want 1)`},
	{"version float", "version: 1.0\n", `p.yaml:1:10: wrong type for version: got the number 1.0 (want 1)`},
	{"version null", "version:\n", `p.yaml:1:9: wrong type for version: got no value (want 1)`},

	// Types.
	{"string for list", "version: 1\nprotect: /\n", `p.yaml:2:10: wrong type for protect: got the string "/" (want a list of absolute paths)`},
	{"null for list", "version: 1\nexceptions:\n", `p.yaml:2:12: wrong type for exceptions: got no value (want a list of absolute paths)`},
	{"integer in path list", "version: 1\nprotect: [/, 3]\n", `p.yaml:2:14: wrong type for protect[1]: got the integer 3 (want an absolute path)`},
	{"list in path list", "version: 1\nprotect: [[/]]\n", `p.yaml:2:11: wrong type for protect[0]: got a list (want an absolute path)`},
	{"custom tag", "version: 1\nprotect: [!p /]\n", `p.yaml:2:11: wrong type for protect[0]: got a value tagged "!p" (want an absolute path)`},
	{"string for section", "version: 1\nscope: /x\n", `p.yaml:2:8: wrong type for scope: got the string "/x" (want a mapping with the key cgroups)`},
	{"list for exec", "version: 1\nexec: [/usr]\n", `p.yaml:2:7: wrong type for exec: got a list (want a mapping with the keys image_paths, image_files, interpreters)`},
	{"string for net", "version: 1\nnet: 22\n", `p.yaml:2:6: wrong type for net: got the integer 22 (want a mapping with the keys allowed_ports, deny_binds)`},
	{"string for reflex", "version: 1\nreflex: kill\n", `p.yaml:2:9: wrong type for reflex: got the string "kill" (want a mapping with the keys kill, cordon)`},
	{"yes for bool", "version: 1\nreflex:\n  kill: yes\n", `p.yaml:3:9: wrong type for reflex.kill: got the string "yes" (want true or false)`},
	{"int for bool", "version: 1\nseal_on_start: 1\n", `p.yaml:2:16: wrong type for seal_on_start: got the integer 1 (want true or false)`},
	{"string for deny_binds", "version: 1\nnet:\n  deny_binds: \"true\"\n", `p.yaml:3:15: wrong type for net.deny_binds: got the string "true" (want true or false)`},
	{"string for ports", "version: 1\nnet:\n  allowed_ports: 22\n", `p.yaml:3:18: wrong type for net.allowed_ports: got the integer 22 (want a list of ports such as [22, "8000-8080"])`},

	// Paths.
	{"relative path", "version: 1\nprotect: [usr]\n", `p.yaml:2:11: path "usr" in protect is not absolute (want a path starting with "/")`},
	{"empty path", "version: 1\nexceptions: [\"\"]\n", `p.yaml:2:14: path "" in exceptions is empty (want an absolute path such as "/usr")`},
	{"dot dot", "version: 1\nprotect: [/a/../b]\n", `p.yaml:2:11: path "/a/../b" in protect has a ".." component (want a clean absolute path such as "/var/log")`},
	{"trailing dot dot", "version: 1\nexec:\n  image_paths: [/usr/..]\n", `p.yaml:3:17: path "/usr/.." in exec.image_paths has a ".." component (want a clean absolute path such as "/var/log")`},
	{"dot", "version: 1\nexceptions: [/./tmp]\n", `p.yaml:2:14: path "/./tmp" in exceptions has a "." component (want a clean absolute path such as "/var/log")`},
	{"double slash", "version: 1\nprotect: [/a//b]\n", `p.yaml:2:11: path "/a//b" in protect has an empty component ("//") (want a clean absolute path such as "/var/log")`},
	{"root double slash", "version: 1\nprotect: [//]\n", `p.yaml:2:11: path "//" in protect has an empty component ("//") (want a clean absolute path such as "/var/log")`},
	{"NUL", "version: 1\nprotect: [\"/a\\0b\"]\n", `p.yaml:2:11: path "/a\x00b" in protect has control character 0x00 (want printable characters only)`},
	{"newline", "version: 1\nprotect: [\"/a\\nb\"]\n", `p.yaml:2:11: path "/a\nb" in protect has control character 0x0a (want printable characters only)`},
	{"too long dir", "version: 1\nprotect: [/" + strings.Repeat("a", 254) + "]\n", `p.yaml:2:11: path "/` + strings.Repeat("a", 63) + `"... in protect is 255 bytes long (want at most 254 bytes: the kernel matches at most 255, trailing slash included)`},
	{"too long file", "version: 1\nexec:\n  image_files: [/" + strings.Repeat("b", 255) + "]\n", `p.yaml:3:17: path "/` + strings.Repeat("b", 63) + `"... in exec.image_files is 256 bytes long (want at most 255 bytes, the kernel's limit)`},
	{"too long cgroup", "version: 1\nscope:\n  cgroups: [/" + strings.Repeat("c", 4095) + "]\n", `p.yaml:3:13: path "/` + strings.Repeat("c", 63) + `"... in scope.cgroups is 4096 bytes long (want at most 4095 bytes)`},
	{"relative cgroup", "version: 1\nscope:\n  cgroups: [drift/host1]\n", `p.yaml:3:13: path "drift/host1" in scope.cgroups is not absolute (want a path starting with "/")`},
	{"duplicate path", "version: 1\nprotect: [/usr, /usr/]\n", `p.yaml:2:17: duplicate path "/usr" in protect (already listed at 2:11; keep one)`},
	{"duplicate image path", "version: 1\nexec:\n  image_paths:\n    - /opt\n    - /opt\n", `p.yaml:5:7: duplicate path "/opt" in exec.image_paths (already listed at 4:7; keep one)`},
	{"duplicate cgroup", "version: 1\nscope:\n  cgroups: [/a, /a]\n", `p.yaml:3:17: duplicate path "/a" in scope.cgroups (already listed at 3:13; keep one)`},
	{"file with slash", "version: 1\nexec:\n  image_files: [/usr/bin/]\n", `p.yaml:3:17: path "/usr/bin/" in exec.image_files ends in a slash (want a file; list directories under exec.image_paths)`},
	{"root as file", "version: 1\nexec:\n  image_files: [/]\n", `p.yaml:3:17: path "/" in exec.image_files is the root directory (want a file; list directories under exec.image_paths)`},
	{"empty protect", "version: 1\nprotect: []\n", `p.yaml:2:10: protect is empty (want at least one path; omit protect for the default ["/"])`},
	{"exception outside protect", "version: 1\nprotect: [/usr]\nexceptions: [/var/log]\n", `p.yaml:3:14: exception "/var/log" is not under any protect entry (it exempts nothing; remove it or protect a parent)`},
	{"exception beside protect", "version: 1\nprotect: [/usr]\nexceptions: [/usrx]\n", `p.yaml:3:14: exception "/usrx" is not under any protect entry (it exempts nothing; remove it or protect a parent)`},
	{"exception equal to protect", "version: 1\nprotect: [/usr]\nexceptions: [/usr/]\n", `p.yaml:3:14: exception "/usr" is also a protect entry (want a path strictly under a protected one; remove one of the two)`},
	{"exception root", "version: 1\nexceptions: [/]\n", `p.yaml:2:14: exception "/" is also a protect entry (want a path strictly under a protected one; remove one of the two)`},

	// Ports.
	{"port 0", "version: 1\nnet:\n  allowed_ports: [0]\n", `p.yaml:3:19: port 0 out of range (want 1-65535)`},
	{"port too big", "version: 1\nnet:\n  allowed_ports: [65536]\n", `p.yaml:3:19: port 65536 out of range (want 1-65535)`},
	{"port huge", "version: 1\nnet:\n  allowed_ports: [99999999999999999999999]\n", `p.yaml:3:19: port 99999999999999999999999 out of range (want 1-65535)`},
	{"port negative", "version: 1\nnet:\n  allowed_ports: [-1]\n", `p.yaml:3:19: port -1 out of range (want 1-65535)`},
	{"port leading zero", "version: 1\nnet:\n  allowed_ports: [022]\n", `p.yaml:3:19: port 022 has a leading zero (want 22)`},
	{"port hex", "version: 1\nnet:\n  allowed_ports: [0x16]\n", `p.yaml:3:19: malformed port "0x16" (want a decimal port such as 22 or a range such as "8000-8080")`},
	{"port float", "version: 1\nnet:\n  allowed_ports: [22.5]\n", `p.yaml:3:19: wrong type for net.allowed_ports[0]: got the number 22.5 (want a port such as 22 or a range such as "8000-8080")`},
	{"port word", "version: 1\nnet:\n  allowed_ports: [ssh]\n", `p.yaml:3:19: malformed port "ssh" (want a decimal port such as 22 or a range such as "8000-8080")`},
	{"range backwards", "version: 1\nnet:\n  allowed_ports: [\"90-80\"]\n", `p.yaml:3:19: port range "90-80" is backwards (want "80-90")`},
	{"range open", "version: 1\nnet:\n  allowed_ports: [\"80-\"]\n", `p.yaml:3:19: malformed port range "80-" (want "lo-hi" such as "8000-8080")`},
	{"range three parts", "version: 1\nnet:\n  allowed_ports: [1-2-3]\n", `p.yaml:3:19: malformed port range "1-2-3" (want "lo-hi" such as "8000-8080")`},
	{"range spaces", "version: 1\nnet:\n  allowed_ports: [\"1 - 2\"]\n", `p.yaml:3:19: malformed port range "1 - 2" (want "lo-hi" such as "8000-8080")`},
	{"range zero", "version: 1\nnet:\n  allowed_ports: [\"0-3\"]\n", `p.yaml:3:19: port range "0-3" out of range (want 1-65535)`},
	{"range too big", "version: 1\nnet:\n  allowed_ports: [\"1-70000\"]\n", `p.yaml:3:19: port range "1-70000" out of range (want 1-65535)`},
	{"duplicate port", "version: 1\nnet:\n  allowed_ports: [22, \"22\"]\n", `p.yaml:3:23: duplicate port 22 (already listed at 3:19; keep one)`},
	{"overlapping ranges", "version: 1\nnet:\n  allowed_ports: [\"8000-8080\", \"8080-9000\"]\n", `p.yaml:3:32: port 8080-9000 overlaps 8000-8080 at 3:19 (want disjoint ports and ranges)`},
	{"port inside earlier range", "version: 1\nnet:\n  allowed_ports: [\"10-20\", 15]\n", `p.yaml:3:28: port 15 overlaps 10-20 at 3:19 (want disjoint ports and ranges)`},
	{"range around earlier port", "version: 1\nnet:\n  allowed_ports: [15, \"10-20\"]\n", `p.yaml:3:23: port 10-20 overlaps 15 at 3:19 (want disjoint ports and ranges)`},

	// Actions belong to the responder's policy.
	{"actions section", "version: 1\nactions:\n  file: cordon\n", `p.yaml:2:1: actions are no longer set in the sensor policy: the responder's policy decides them (move this section to ` + ResponderPolicy + `)`},

	{"exception under a broken protect entry", "version: 1\nprotect: [/srv/./x]\nexceptions: [/srv/x/tmp]\n",
		`p.yaml:2:11: path "/srv/./x" in protect has a "." component (want a clean absolute path such as "/var/log")`},

	// Several mistakes are reported together, in file order.
	{"several", "version: 3\nprotect: [usr]\nreflex:\n  kill: nuke\n",
		"p.yaml:1:10: unsupported version 3 (want 1)\n" +
			"p.yaml:2:11: path \"usr\" in protect is not absolute (want a path starting with \"/\")\n" +
			"p.yaml:4:9: wrong type for reflex.kill: got the string \"nuke\" (want true or false)"},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error, policy %+v\nwant %s", p, tt.want)
			}
			if p != nil {
				t.Errorf("policy %+v returned with the error", p)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "p.yaml" || pe.Line < 1 || pe.Col < 1 {
				t.Errorf("errors.As(*Error) = %+v", pe)
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\n")
	for i := range 12 {
		b.WriteString("k" + strings.Repeat("x", i) + ": 1\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), maxErrors+1, err)
	}
	if want := "p.yaml:12:1: 2 more errors not shown (fix the ones above first)"; lines[maxErrors] != want {
		t.Errorf("last line %q, want %q", lines[maxErrors], want)
	}
}

func TestTooLarge(t *testing.T) {
	data := []byte("version: 1\n" + strings.Repeat("#", maxFileSize))
	_, err := Parse("p.yaml", data)
	want := "p.yaml:1:1: policy file is larger than 1048576 bytes (want a smaller file; a policy takes a few kilobytes)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestHash(t *testing.T) {
	a, err := Parse("a.yaml", []byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.yaml", []byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash != b.Hash || a.Hash != sha(fullYAML) {
		t.Errorf("hash not stable: %s, %s", a.Hash, b.Hash)
	}
	// The hash is of the bytes: a comment changes it though the policy is the same.
	c, err := Parse("a.yaml", []byte(fullYAML+"# comment\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash == a.Hash {
		t.Error("hash ignores a change to the file")
	}
	if Default().Hash != Default().Hash || Default().Hash != sha(defaultYAML) {
		t.Error("default hash not stable")
	}
	// A constant so that a change to the default text is a deliberate one.
	if got, want := Default().Hash, "sha256:c1b23e47cff9949b45ac10605747518c2d1d2c609a9495a128a789d69d045b78"; got != want {
		t.Errorf("default hash %s, want %s", got, want)
	}
}

func TestRules(t *testing.T) {
	p, err := Parse("full.yaml", []byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Prefix: "/", Class: ClassProtect, ID: 1, Name: "protect[0]=/"},
		{Prefix: "/var/lib/app/", Class: ClassProtect, ID: 2, Name: "protect[1]=/var/lib/app"},
		{Prefix: "/var/", Class: ClassExempt, ID: 3, Name: "exceptions[0]=/var"},
		{Prefix: "/tmp/", Class: ClassExempt, ID: 4, Name: "exceptions[1]=/tmp"},
	}
	if got := p.Rules(); !reflect.DeepEqual(got, want) {
		t.Errorf("Rules:\n got %+v\nwant %+v", got, want)
	}
	wantImage := []Rule{
		{Prefix: "/usr/", ID: 5, Name: "exec.image_paths[0]=/usr"},
		{Prefix: "/opt/app/", ID: 6, Name: "exec.image_paths[1]=/opt/app"},
		{Prefix: "/usr/local/libexec/check", ID: 7, Name: "exec.image_files[0]=/usr/local/libexec/check"},
	}
	if got := p.ImageRules(); !reflect.DeepEqual(got, wantImage) {
		t.Errorf("ImageRules:\n got %+v\nwant %+v", got, wantImage)
	}

	d := Default().Rules()
	if len(d) != 8 || d[0].Prefix != "/" || d[7] != (Rule{Prefix: "/var/log/", Class: ClassExempt, ID: 8, Name: "exceptions[6]=/var/log"}) {
		t.Errorf("default Rules: %+v", d)
	}
	if img := Default().ImageRules(); len(img) != 6 || img[0].ID != 9 || img[5].Prefix != "/opt/" {
		t.Errorf("default ImageRules: %+v", img)
	}
}

// TestRulesPrefixMatch checks that the prefixes Rules gives, matched by longest prefix, decide paths
// the way the policy means: the kernel does the same match.
func TestRulesPrefixMatch(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nexceptions: [/var/log, /var/lib]\nprotect: [/, /var/lib/app]\n"))
	if err != nil {
		t.Fatal(err)
	}
	match := func(path string) Class {
		var best Rule
		for _, r := range p.Rules() {
			if strings.HasPrefix(path, r.Prefix) && len(r.Prefix) > len(best.Prefix) {
				best = r
			}
		}
		return best.Class
	}
	for path, want := range map[string]Class{
		"/etc/passwd":        ClassProtect,
		"/var/log/syslog":    ClassExempt,
		"/var/logx":          ClassProtect,
		"/var/log2/x":        ClassProtect,
		"/var/lib/dpkg/x":    ClassExempt,
		"/var/lib/app/bin":   ClassProtect,
		"/var/lib/appdata/x": ClassExempt,
	} {
		if got := match(path); got != want {
			t.Errorf("%s: class %d, want %d", path, got, want)
		}
	}
}

func TestPortAllowed(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nnet:\n  allowed_ports: [22, \"8000-8080\", 65535, \"1-1\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[uint16]bool{
		0: false, 1: true, 2: false, 21: false, 22: true, 23: false,
		7999: false, 8000: true, 8040: true, 8080: true, 8081: false, 65534: false, 65535: true,
	} {
		if got := p.PortAllowed(port); got != want {
			t.Errorf("PortAllowed(%d) = %v, want %v", port, got, want)
		}
	}
	if Default().PortAllowed(22) {
		t.Error("the default policy allows port 22")
	}
}

func TestExampleFile(t *testing.T) {
	p, err := Load("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != "example.yaml" || p.Hash != sha(string(data)) {
		t.Errorf("Source %q Hash %q", p.Source, p.Hash)
	}
	if !p.SealOnStart || !reflect.DeepEqual(p.ScopeCgroups, []string{"/drift/web1"}) || len(p.Exceptions) != 9 ||
		!reflect.DeepEqual(p.ExecImageFiles, []string{"/usr/local/libexec/healthcheck"}) ||
		!p.PortAllowed(443) || !p.PortAllowed(9101) || p.PortAllowed(8080) ||
		p.ReflexKill || !p.ReflexCordon {
		t.Errorf("example.yaml parsed to %+v", p)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nactions:\n  file: cordon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad)
	if want := bad + `:2:1: actions are no longer set in the sensor policy: the responder's policy decides them (move this section to ` + ResponderPolicy + `)`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) = %v, want %s", err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("version: 1\n"+strings.Repeat("#", 2*maxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("Load(big) = %v, want a size error", err)
	}
}

// TestKernelAllowLists: kernel.allow_settings takes files under /proc/sys or
// /sys, kernel.allow_devices files under /dev; anything else is refused with
// the key, the place and the fix.
func TestKernelAllowLists(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nkernel:\n  allow_settings: [/proc/sys/vm/drop_caches, /sys/kernel/mm/ksm/run]\n  allow_devices: [/dev/sdb]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.AllowSettings, []string{"/proc/sys/vm/drop_caches", "/sys/kernel/mm/ksm/run"}) || !slices.Equal(p.AllowDevices, []string{"/dev/sdb"}) {
		t.Fatalf("allow lists: %q, %q", p.AllowSettings, p.AllowDevices)
	}
	rules := p.KernelRules()
	if len(rules) != 2 || rules[0].Prefix != "/proc/sys/vm/drop_caches" || rules[0].ID != uint32(len(p.Rules())+len(p.ImageRules())+1) {
		t.Fatalf("kernel rules: %+v", rules)
	}
	for _, c := range []struct{ yaml, want string }{
		{"kernel:\n  allow_settings: [/etc/sysctl.conf]\n", `p.yaml:3:20: path "/etc/sysctl.conf" in kernel.allow_settings is not a kernel setting: a file under /proc/sys or /sys (want a path such as /proc/sys/...; other paths are covered by protect and exceptions)`},
		{"kernel:\n  allow_devices: [/proc/sys]\n", `p.yaml:3:19: path "/proc/sys" in kernel.allow_devices is not a device file under /dev (want a path such as /dev/...; other paths are covered by protect and exceptions)`},
		{"kernel:\n  allow_tunables: []\n", `p.yaml:3:3: unknown key "allow_tunables" in kernel (want allow_settings, allow_devices)`},
		{"kernel: [/proc/sys]\n", `p.yaml:2:9: wrong type for kernel: got a list (want a mapping with the keys allow_settings, allow_devices)`},
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+c.yaml))
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: got %v, want %s", c.yaml, err, c.want)
		}
	}
}

// TestInterpreters: exec.interpreters takes program names; a path, a
// version or a duplicate is refused with the place and the fix.
func TestInterpreters(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nexec:\n  interpreters: [python, tclsh, node]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Interpreters, []string{"python", "tclsh", "node"}) {
		t.Fatalf("interpreters %q", p.Interpreters)
	}
	for _, c := range []struct{ yaml, want string }{
		{"[/bin/python]", `p.yaml:3:18: exec.interpreters[0] "/bin/python" is not a program name (want a name such as python, without a path or a version: python3.11 matches python)`},
		{"[python3]", `p.yaml:3:18: exec.interpreters[0] "python3" is not a program name (want a name such as python, without a path or a version: python3.11 matches python)`},
		{"[sh, sh]", `p.yaml:3:22: duplicate interpreter "sh" in exec.interpreters (already listed at 3:18; keep one)`},
		{"python", `p.yaml:3:17: wrong type for exec.interpreters: got the string "python" (want a list of program names such as python)`},
	} {
		_, err := Parse("p.yaml", []byte("version: 1\nexec:\n  interpreters: "+c.yaml+"\n"))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %s", c.yaml, err, c.want)
		}
	}
}
