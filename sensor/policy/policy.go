package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// ResponderPolicy is where the actions taken on findings are decided: the
// responder's policy, not this one, which says what the kernel watches.
const ResponderPolicy = "the driftresponder -policy file, see responder/decide/example.yaml"

// PortRange is an inclusive range of TCP/UDP ports; Lo == Hi is a single port.
type PortRange struct{ Lo, Hi uint16 }

// Policy is a parsed and validated policy file. Every list is non-nil after Parse.
type Policy struct {
	Version        int         // always 1
	SealOnStart    bool        // seal_on_start
	ScopeCgroups   []string    // scope.cgroups: cgroup v2 paths; empty means the whole host
	Protect        []string    // protect: absolute directory prefixes, no trailing slash but "/"
	Exceptions     []string    // exceptions: writable directory prefixes under protected ones
	ExecImagePaths []string    // exec.image_paths: directories exec is allowed from
	ExecImageFiles []string    // exec.image_files: single files exec is allowed from
	Interpreters   []string    // exec.interpreters: program names whose script argument is judged like an exec
	AllowedPorts   []PortRange // net.allowed_ports, in file order, disjoint
	DenyBinds      bool        // net.deny_binds: refuse disallowed binds in the kernel
	ReflexKill     bool        // reflex.kill: SIGKILL the actor in the kernel at detection
	ReflexCordon   bool        // reflex.cordon: set the cordon flag in the kernel at detection
	AllowSettings  []string    // kernel.allow_settings: files under /proc/sys or /sys that may be written
	AllowDevices   []string    // kernel.allow_devices: raw devices under /dev that may be opened for writing
	Hash           string      // "sha256:" + hex of the raw file bytes
	Source         string      // the file name it was parsed from, "(default)" for Default()
}

// Class says what a path rule does to the paths under its prefix.
type Class uint32

// Path rule classes; image rules have class 0.
const (
	ClassProtect Class = 1 // a mutation under the prefix is drift
	ClassExempt  Class = 2 // a mutation under the prefix is allowed
)

// Rule is one prefix the kernel matches by longest prefix.
type Rule struct {
	Prefix string // a directory ending in "/", or an exact file (image rules only)
	Class  Class
	ID     uint32 // 1-based, stable for a given policy; findings carry it
	Name   string // human label for findings, e.g. "exceptions[2]=/run"
}

const (
	// maxFileSize bounds what Load and Parse accept; a real policy is a few hundred bytes.
	maxFileSize = 1 << 20
	// maxPrefixLen is the longest prefix the kernel matches, the trailing slash of a directory included.
	maxPrefixLen = 255
	// maxCgroupLen is PATH_MAX minus the NUL: cgroup paths are resolved by user space, not matched in BPF.
	maxCgroupLen = 4095
	// maxErrors is how many errors Parse reports before it sums up the rest.
	maxErrors = 10
	// defaultSource is the Source and error file name of Default().
	defaultSource = "(default)"
)

// defaultYAML is the canonical text of the default policy; Default parses it and hashes it.
const defaultYAML = `# driftsensor default policy
version: 1
seal_on_start: false
scope:
  cgroups: []
protect: ["/"]
exceptions: ["/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp", "/var/log"]
exec:
  image_paths: ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt"]
  image_files: []
net:
  allowed_ports: []
  deny_binds: true
reflex:
  kill: false
  cordon: false
`

// defaultExceptions apply, where they lie under a protect entry, when exceptions is omitted.
var defaultExceptions = []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp", "/var/log"}

// Valid keys at each level, in the order the error messages list them.
var (
	topKeys    = []string{"version", "seal_on_start", "scope", "protect", "exceptions", "exec", "net", "reflex", "kernel"}
	scopeKeys  = []string{"cgroups"}
	execKeys   = []string{"image_paths", "image_files", "interpreters"}
	netKeys    = []string{"allowed_ports", "deny_binds"}
	reflexKeys = []string{"kill", "cordon"}
	kernelKeys = []string{"allow_settings", "allow_devices"}
)

// Default returns the default policy: protect the whole root file system but the usual writable
// directories, allow exec from the image directories, allow no port.
func Default() *Policy {
	p, err := Parse(defaultSource, []byte(defaultYAML))
	if err != nil {
		panic("policy: the built-in default does not parse: " + err.Error())
	}
	return p
}

// Load reads the policy file at path and parses it; errors name path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	// One byte over the limit is enough for Parse to refuse the file by its size.
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates the policy text data; name is the file name used in errors and Source.
// It never panics. On error the policy is nil and the error lists every problem found, one per line.
func Parse(name string, data []byte) (*Policy, error) {
	ps := &parser{name: name}
	p := ps.parse(data)
	if err := ps.err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p.Hash = "sha256:" + hex.EncodeToString(sum[:])
	p.Source = name
	return p, nil
}

// PortAllowed reports whether net.allowed_ports lets something bind or listen on port.
func (p *Policy) PortAllowed(port uint16) bool {
	for _, r := range p.AllowedPorts {
		if r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

// Rules returns the path rules the kernel matches by longest prefix: one per Protect entry
// (ClassProtect), then one per Exceptions entry (ClassExempt), with IDs 1, 2, ... in that order.
// Prefixes are directories with a trailing slash; the root is "/".
func (p *Policy) Rules() []Rule {
	rules := make([]Rule, 0, len(p.Protect)+len(p.Exceptions))
	for i, s := range p.Protect {
		rules = append(rules, Rule{Prefix: dirPrefix(s), Class: ClassProtect, ID: uint32(len(rules) + 1),
			Name: "protect[" + strconv.Itoa(i) + "]=" + s})
	}
	for i, s := range p.Exceptions {
		rules = append(rules, Rule{Prefix: dirPrefix(s), Class: ClassExempt, ID: uint32(len(rules) + 1),
			Name: "exceptions[" + strconv.Itoa(i) + "]=" + s})
	}
	return rules
}

// ImageRules returns the places exec is allowed from, class 0, with IDs continuing after Rules():
// one directory prefix (trailing slash) per ExecImagePaths entry, then one exact file (no trailing
// slash) per ExecImageFiles entry.
func (p *Policy) ImageRules() []Rule {
	id := uint32(len(p.Protect) + len(p.Exceptions))
	rules := make([]Rule, 0, len(p.ExecImagePaths)+len(p.ExecImageFiles))
	for i, s := range p.ExecImagePaths {
		id++
		rules = append(rules, Rule{Prefix: dirPrefix(s), ID: id, Name: "exec.image_paths[" + strconv.Itoa(i) + "]=" + s})
	}
	for i, s := range p.ExecImageFiles {
		id++
		rules = append(rules, Rule{Prefix: s, ID: id, Name: "exec.image_files[" + strconv.Itoa(i) + "]=" + s})
	}
	return rules
}

// dirPrefix turns a directory into the prefix the kernel matches: "/var/log" -> "/var/log/".
func dirPrefix(dir string) string {
	if strings.HasSuffix(dir, "/") {
		return dir
	}
	return dir + "/"
}

// Error is one problem in a policy file, at a 1-based line and column.
type Error struct {
	File      string
	Line, Col int
	Msg       string // what is wrong (what would be right)
}

// Error formats the problem as FILE:LINE:COL: message.
func (e *Error) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg) }

// parser collects the problems of one file, so a user fixes them in one round instead of one per run.
type parser struct {
	name string
	errs []*Error
}

// errorAt records a problem at a position.
func (ps *parser) errorAt(line, col int, format string, args ...any) {
	ps.errs = append(ps.errs, &Error{File: ps.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// errorf records a problem at the position of node n.
func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	ps.errorAt(n.Line, n.Column, format, args...)
}

// err returns nil, or every problem sorted by position, the first maxErrors of them and a sum of the rest.
func (ps *parser) err() error {
	if len(ps.errs) == 0 {
		return nil
	}
	sort.SliceStable(ps.errs, func(i, j int) bool {
		a, b := ps.errs[i], ps.errs[j]
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	errs := ps.errs
	if len(errs) > maxErrors {
		rest := errs[maxErrors]
		errs = append(errs[:maxErrors:maxErrors], &Error{File: ps.name, Line: rest.Line, Col: rest.Col,
			Msg: fmt.Sprintf("%d more errors not shown (fix the ones above first)", len(ps.errs)-maxErrors)})
	}
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// parse reads the document and every section; problems go to ps.errs.
func (ps *parser) parse(data []byte) *Policy {
	if len(data) > maxFileSize {
		ps.errorAt(1, 1, "policy file is larger than %d bytes (want a smaller file; a policy takes a few kilobytes)", maxFileSize)
		return nil
	}
	if !ps.plainText(data) {
		return nil
	}
	root := ps.document(data)
	if root == nil {
		return nil
	}
	ps.refuseAliases(root)
	if root.Kind != yaml.MappingNode {
		ps.errorf(root, "wrong type for the policy: got %s (want a mapping of keys, starting with version: 1)", describe(root))
		return nil
	}

	p := &Policy{
		ScopeCgroups:   []string{},
		Protect:        []string{"/"},
		ExecImagePaths: []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt"},
		ExecImageFiles: []string{},
		Interpreters:   append([]string(nil), DefaultInterpreters...),
		AllowedPorts:   []PortRange{},
		DenyBinds:      true,
		AllowSettings:  []string{},
		AllowDevices:   []string{},
	}
	top := ps.fields(root, "", "key", topKeys)

	if n := top["version"]; n == nil {
		ps.errorf(root, `missing key "version" (want version: 1 as the first line)`)
	} else if scalarTag(n) != "!!int" {
		ps.wrongType(n, "version", "1")
	} else if n.Value != "1" {
		ps.errorf(n, "unsupported version %s (want 1)", cut(n.Value))
	} else {
		p.Version = 1
	}
	if n := top["seal_on_start"]; n != nil {
		ps.boolean(n, "seal_on_start", &p.SealOnStart)
	}
	if n := top["scope"]; n != nil && ps.isMap(n, "scope", "a mapping with the key cgroups") {
		scope := ps.fields(n, "scope", "key", scopeKeys)
		if c := scope["cgroups"]; c != nil {
			p.ScopeCgroups = entryPaths(ps.paths(c, "scope.cgroups", cgroupPath))
		}
	}
	protectOK := true
	if n := top["protect"]; n != nil {
		before := len(ps.errs)
		if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			ps.errorf(n, `protect is empty (want at least one path; omit protect for the default ["/"])`)
		}
		p.Protect = entryPaths(ps.paths(n, "protect", dirPath))
		protectOK = len(ps.errs) == before
	}
	if n := top["exceptions"]; n != nil {
		exceptions := ps.paths(n, "exceptions", dirPath)
		p.Exceptions = entryPaths(exceptions)
		if protectOK { // else an exception under a broken protect entry would be blamed too
			ps.checkExceptions(p.Protect, exceptions)
		}
	} else {
		p.Exceptions = defaultsUnder(p.Protect)
	}
	if n := top["exec"]; n != nil && ps.isMap(n, "exec", "a mapping with the keys image_paths, image_files, interpreters") {
		exec := ps.fields(n, "exec", "key", execKeys)
		if c := exec["image_paths"]; c != nil {
			p.ExecImagePaths = entryPaths(ps.paths(c, "exec.image_paths", dirPath))
		}
		if c := exec["image_files"]; c != nil {
			p.ExecImageFiles = entryPaths(ps.paths(c, "exec.image_files", filePath))
		}
		if c := exec["interpreters"]; c != nil {
			p.Interpreters = ps.interpreters(c)
		}
	}
	if n := top["net"]; n != nil && ps.isMap(n, "net", "a mapping with the keys allowed_ports, deny_binds") {
		net := ps.fields(n, "net", "key", netKeys)
		if c := net["allowed_ports"]; c != nil {
			p.AllowedPorts = ps.ports(c)
		}
		if c := net["deny_binds"]; c != nil {
			ps.boolean(c, "net.deny_binds", &p.DenyBinds)
		}
	}
	if n := top["reflex"]; n != nil && ps.isMap(n, "reflex", "a mapping with the keys kill, cordon") {
		reflex := ps.fields(n, "reflex", "key", reflexKeys)
		if c := reflex["kill"]; c != nil {
			ps.boolean(c, "reflex.kill", &p.ReflexKill)
		}
		if c := reflex["cordon"]; c != nil {
			ps.boolean(c, "reflex.cordon", &p.ReflexCordon)
		}
	}
	if n := top["kernel"]; n != nil && ps.isMap(n, "kernel", "a mapping with the keys allow_settings, allow_devices") {
		kernel := ps.fields(n, "kernel", "key", kernelKeys)
		if c := kernel["allow_settings"]; c != nil {
			p.AllowSettings = ps.under(ps.paths(c, "kernel.allow_settings", filePath), "kernel.allow_settings",
				"a kernel setting: a file under /proc/sys or /sys", "/proc/sys/", "/sys/")
		}
		if c := kernel["allow_devices"]; c != nil {
			p.AllowDevices = ps.under(ps.paths(c, "kernel.allow_devices", filePath), "kernel.allow_devices",
				"a device file under /dev", "/dev/")
		}
	}
	return p
}

// DefaultInterpreters are the programs whose script argument is judged like an exec by default.
var DefaultInterpreters = []string{"sh", "bash", "dash", "python", "perl", "ruby", "node", "php"}

// interpreterName is what the kernel compares with an executed binary's name, trailing digits and
// dots cut.
var interpreterName = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9._+-]*[A-Za-z_+-]$|^[A-Za-z_+-]$`)

// interpreters parses exec.interpreters: program names, no duplicates.
func (ps *parser) interpreters(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode {
		ps.wrongType(n, "exec.interpreters", "a list of program names such as python")
		return []string{}
	}
	out := []string{}
	seen := map[string]*yaml.Node{}
	for i, item := range n.Content {
		field := "exec.interpreters[" + strconv.Itoa(i) + "]"
		if scalarTag(item) != "!!str" {
			ps.wrongType(item, field, "a program name such as python")
			continue
		}
		v := item.Value
		switch {
		case len(v) > 15:
			ps.errorf(item, "%s %s is %d bytes long (want at most 15: the kernel compares the binary's name)", field, quoteCut(v), len(v))
			continue
		case !interpreterName.MatchString(v):
			ps.errorf(item, "%s %s is not a program name (want a name such as python, without a path or a version: python3.11 matches python)", field, quoteCut(v))
			continue
		}
		if prev := seen[v]; prev != nil {
			ps.errorf(item, "duplicate interpreter %q in exec.interpreters (already listed at %d:%d; keep one)", v, prev.Line, prev.Column)
			continue
		}
		seen[v] = item
		out = append(out, v)
	}
	return out
}

// under keeps the entries that lie under one of prefixes and reports the others.
func (ps *parser) under(es []entry, field, want string, prefixes ...string) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		ok := false
		for _, pre := range prefixes {
			ok = ok || (strings.HasPrefix(e.path, pre) && len(e.path) > len(pre))
		}
		if !ok {
			ps.errorf(e.node, "path %s in %s is not %s (want a path such as %s...; other paths are covered by protect and exceptions)", quoteCut(e.path), field, want, prefixes[0])
			continue
		}
		out = append(out, e.path)
	}
	return out
}

// CoversMount says whether a file system mounted at dir holds protected files: dir's longest-prefix
// rule protects it, or a protect entry lies below it.
func (p *Policy) CoversMount(dir string) bool {
	best, class := -1, Class(0)
	for _, r := range p.Rules() {
		if (r.Prefix == "/" || strings.HasPrefix(dirPrefix(dir), r.Prefix)) && len(r.Prefix) > best {
			best, class = len(r.Prefix), r.Class
		}
	}
	if class == ClassProtect {
		return true
	}
	for _, pr := range p.Protect {
		if strings.HasPrefix(dirPrefix(pr), dirPrefix(dir)) {
			return true
		}
	}
	return false
}

// KernelRules returns the kernel settings the policy allows writing, as exact files with IDs
// continuing after ImageRules(). The kernel matches them in the path trie, flagged (backend.ClassKernelAllow).
func (p *Policy) KernelRules() []Rule {
	id := uint32(len(p.Protect) + len(p.Exceptions) + len(p.ExecImagePaths) + len(p.ExecImageFiles))
	rules := make([]Rule, 0, len(p.AllowSettings))
	for i, s := range p.AllowSettings {
		id++
		rules = append(rules, Rule{Prefix: s, Class: ClassExempt, ID: id, Name: "kernel.allow_settings[" + strconv.Itoa(i) + "]=" + s})
	}
	return rules
}

// plainText refuses bytes YAML does not allow, with their position; yaml.v3 names neither.
func (ps *parser) plainText(data []byte) bool {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			ps.errorAt(line, col, "invalid UTF-8 byte 0x%02x (want UTF-8 text)", data[i])
			return false
		case !yamlPrintable(r):
			ps.errorAt(line, col, "control character %U (want printable text; write it as an escape in a double-quoted string)", r)
			return false
		case r == '\n':
			line, col = line+1, 1
		default:
			col++
		}
		i += size
	}
	return true
}

// yamlPrintable is the YAML 1.2 set of characters a stream may hold.
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return true
	case r >= 0x20 && r <= 0x7e, r == 0x85, r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// document returns the root node of the only YAML document in data, or nil after recording why not.
func (ps *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decode(dec, &doc); err == io.EOF {
		ps.errorAt(1, 1, `empty policy file (want at least "version: 1")`)
		return nil
	} else if err != nil {
		ps.syntaxError(err)
		return nil
	}
	var next yaml.Node
	if err := decode(dec, &next); err == nil {
		ps.errorAt(next.Line, next.Column, "multiple YAML documents (want exactly one; remove this ---)")
		return nil
	} else if err != io.EOF {
		ps.syntaxError(err)
		return nil
	}
	if len(doc.Content) != 1 || isNull(doc.Content[0]) {
		ps.errorAt(1, 1, `empty policy file (want at least "version: 1")`)
		return nil
	}
	return doc.Content[0]
}

// decode keeps a yaml.v3 panic from escaping Parse; the fuzz test fails on the error it becomes.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal parser failure: %v", r)
		}
	}()
	return dec.Decode(n)
}

// yaml.v3 reports "yaml: line N: problem", or "yaml: problem" for the first line.
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the problems yaml.v3's parser (not its scanner) reports; it gives their line
// 0-based, the scanner's 1-based.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
	"invalid parser state":                   true,
}

// syntaxError records a yaml.v3 error with the line it names (the first line when it names none).
func (ps *parser) syntaxError(err error) {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	line := 1
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		n, convErr := strconv.Atoi(m[1])
		if convErr == nil && n > 0 {
			line = n
			if parserProblems[m[2]] {
				line++
			}
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	ps.errorAt(line, 1, "invalid YAML: %s (check indentation, quoting and brackets)", msg)
}

// refuseAliases reports every anchor and alias: they would let one value stand for another, and a
// policy should read as written. Alias nodes have no Content, so the walk cannot loop.
func (ps *parser) refuseAliases(n *yaml.Node) {
	if n.Kind == yaml.AliasNode {
		ps.errorf(n, "alias *%s is not supported (write the value out)", n.Value)
		return
	}
	if n.Anchor != "" {
		ps.errorf(n, "anchor &%s is not supported (write the value out where it is used)", n.Anchor)
	}
	for _, c := range n.Content {
		ps.refuseAliases(c)
	}
}

// fields returns the values of mapping m by key, after reporting keys that are not in valid, are
// duplicated or are not plain names. section is the dotted path of m ("" at the top), what names a
// key in messages ("key", "action kind").
func (ps *parser) fields(m *yaml.Node, section, what string, valid []string) map[string]*yaml.Node {
	in := ""
	if section != "" {
		in = " in " + section
	}
	out := make(map[string]*yaml.Node)
	first := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.AliasNode {
			continue // reported by refuseAliases
		}
		if k.Kind != yaml.ScalarNode {
			ps.errorf(k, "wrong type for a %s%s: got %s (want %s)", what, in, describe(k), strings.Join(valid, ", "))
			continue
		}
		if section == "" && k.Value == "actions" {
			// One source of truth for what is done about a finding.
			ps.errorf(k, "actions are no longer set in the sensor policy: the responder's policy decides them (move this section to %s)", ResponderPolicy)
			continue
		}
		if !slices.Contains(valid, k.Value) {
			ps.errorf(k, "unknown %s %s%s (want %s)", what, quoteCut(k.Value), in, strings.Join(valid, ", "))
			continue
		}
		if prev := first[k.Value]; prev != nil {
			ps.errorf(k, "duplicate %s %q%s (already set at %d:%d; keep one)", what, k.Value, in, prev.Line, prev.Column)
			continue
		}
		first[k.Value] = k
		if v.Kind != yaml.AliasNode {
			out[k.Value] = v
		}
	}
	return out
}

// isMap reports whether n is a mapping, and records a problem if it is not.
func (ps *parser) isMap(n *yaml.Node, field, want string) bool {
	if n.Kind == yaml.MappingNode {
		return true
	}
	ps.wrongType(n, field, want)
	return false
}

// wrongType records that field holds n where want was expected.
func (ps *parser) wrongType(n *yaml.Node, field, want string) {
	if n.Kind == yaml.AliasNode {
		return // reported by refuseAliases
	}
	ps.errorf(n, "wrong type for %s: got %s (want %s)", field, describe(n), want)
}

// boolean stores the value of a true/false scalar.
func (ps *parser) boolean(n *yaml.Node, field string, out *bool) {
	if scalarTag(n) != "!!bool" {
		ps.wrongType(n, field, "true or false")
		return
	}
	*out = strings.EqualFold(n.Value, "true")
}

// pathKind selects the rules a path list follows.
type pathKind int

const (
	dirPath    pathKind = iota // a directory prefix matched in the kernel
	filePath                   // an exact file matched in the kernel
	cgroupPath                 // a cgroup v2 directory, resolved in user space
)

// entry is a normalised path and the node it came from, for messages about it later.
type entry struct {
	path string
	node *yaml.Node
}

// entryPaths returns the paths of entries, never nil.
func entryPaths(es []entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.path)
	}
	return out
}

// paths parses a list of paths, normalised, with no duplicates.
func (ps *parser) paths(n *yaml.Node, field string, kind pathKind) []entry {
	if n.Kind != yaml.SequenceNode {
		ps.wrongType(n, field, "a list of absolute paths")
		return nil
	}
	var out []entry
	seen := make(map[string]*yaml.Node)
	for i, item := range n.Content {
		if scalarTag(item) != "!!str" {
			ps.wrongType(item, field+"["+strconv.Itoa(i)+"]", "an absolute path")
			continue
		}
		path, problem, want := checkPath(item.Value, kind)
		if problem != "" {
			ps.errorf(item, "path %s in %s %s (%s)", quoteCut(item.Value), field, problem, want)
			continue
		}
		if prev := seen[path]; prev != nil {
			ps.errorf(item, "duplicate path %s in %s (already listed at %d:%d; keep one)", quoteCut(path), field, prev.Line, prev.Column)
			continue
		}
		seen[path] = item
		out = append(out, entry{path, item})
	}
	return out
}

// checkPath normalises s (drops a directory's trailing slash), or says what is wrong with it and
// what would be right.
func checkPath(s string, kind pathKind) (path, problem, want string) {
	const clean = "want a clean absolute path such as \"/var/log\""
	if s == "" {
		return "", "is empty", `want an absolute path such as "/usr"`
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Sprintf("has control character 0x%02x", c), "want printable characters only"
		}
	}
	if s[0] != '/' {
		return "", "is not absolute", `want a path starting with "/"`
	}
	if strings.Contains(s, "//") {
		return "", `has an empty component ("//")`, clean
	}
	if len(s) > 1 && strings.HasSuffix(s, "/") {
		if kind == filePath {
			return "", "ends in a slash", "want a file; list directories under exec.image_paths"
		}
		s = s[:len(s)-1]
	}
	if kind == filePath && s == "/" {
		return "", "is the root directory", "want a file; list directories under exec.image_paths"
	}
	for _, c := range strings.Split(s[1:], "/") {
		if c == "." || c == ".." {
			return "", fmt.Sprintf("has a %q component", c), clean
		}
	}
	switch {
	case kind == cgroupPath && len(s) > maxCgroupLen:
		return "", fmt.Sprintf("is %d bytes long", len(s)), fmt.Sprintf("want at most %d bytes", maxCgroupLen)
	case kind == filePath && len(s) > maxPrefixLen:
		return "", fmt.Sprintf("is %d bytes long", len(s)), fmt.Sprintf("want at most %d bytes, the kernel's limit", maxPrefixLen)
	case kind == dirPath && s != "/" && len(s) > maxPrefixLen-1:
		return "", fmt.Sprintf("is %d bytes long", len(s)),
			fmt.Sprintf("want at most %d bytes: the kernel matches at most %d, trailing slash included", maxPrefixLen-1, maxPrefixLen)
	}
	return s, "", ""
}

// checkExceptions refuses exceptions that exempt nothing: not strictly under any protect entry.
func (ps *parser) checkExceptions(protectPaths []string, exceptions []entry) {
	set := make(map[string]bool, len(protectPaths))
	for _, p := range protectPaths {
		set[p] = true
	}
	for _, e := range exceptions {
		if set[e.path] {
			ps.errorf(e.node, "exception %s is also a protect entry (want a path strictly under a protected one; remove one of the two)", quoteCut(e.path))
		} else if !underAny(e.path, set) {
			ps.errorf(e.node, "exception %s is not under any protect entry (it exempts nothing; remove it or protect a parent)", quoteCut(e.path))
		}
	}
}

// underAny reports whether a proper ancestor directory of path is in set.
func underAny(path string, set map[string]bool) bool {
	for path != "/" {
		i := strings.LastIndexByte(path, '/')
		if i == 0 {
			path = "/"
		} else {
			path = path[:i]
		}
		if set[path] {
			return true
		}
	}
	return false
}

// defaultsUnder returns the default exceptions strictly under a protect entry.
func defaultsUnder(protect []string) []string {
	set := make(map[string]bool, len(protect))
	for _, p := range protect {
		set[p] = true
	}
	out := []string{}
	for _, e := range defaultExceptions {
		if !set[e] && underAny(e, set) {
			out = append(out, e)
		}
	}
	return out
}

// portItem is a parsed net.allowed_ports entry and its node.
type portItem struct {
	r    PortRange
	node *yaml.Node
}

// ports parses net.allowed_ports: decimal integers and "lo-hi" strings, disjoint.
func (ps *parser) ports(n *yaml.Node) []PortRange {
	if n.Kind != yaml.SequenceNode {
		ps.wrongType(n, "net.allowed_ports", `a list of ports such as [22, "8000-8080"]`)
		return []PortRange{}
	}
	var items []portItem
	for i, item := range n.Content {
		var r PortRange
		var problem string
		switch tag := scalarTag(item); {
		case tag == "!!int", tag == "!!float" && strings.Trim(item.Value, "-0123456789") == "":
			// An integer too big for int64 resolves as a float; it is still a port out of range.
			r.Lo, problem = parsePort(item.Value, item.Value)
			r.Hi = r.Lo
		case tag == "!!str":
			r, problem = parseRange(item.Value)
		default:
			ps.wrongType(item, "net.allowed_ports["+strconv.Itoa(i)+"]", `a port such as 22 or a range such as "8000-8080"`)
			continue
		}
		if problem != "" {
			ps.errorf(item, "%s", problem)
			continue
		}
		items = append(items, portItem{r, item})
	}
	ps.checkOverlaps(items)
	out := make([]PortRange, 0, len(items))
	for _, it := range items {
		out = append(out, it.r)
	}
	return out
}

// parsePort parses one decimal port, s, written as part of the entry whole, for messages.
func parsePort(s, whole string) (uint16, string) {
	what := "port " + cut(whole)
	if s != whole {
		what = "port range " + quoteCut(whole)
	}
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		if s != whole {
			return 0, fmt.Sprintf(`malformed %s (want "lo-hi" such as "8000-8080")`, what)
		}
		return 0, fmt.Sprintf(`malformed port %s (want a decimal port such as 22 or a range such as "8000-8080")`, quoteCut(whole))
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || n < 1 || n > 65535 || digits != s {
		return 0, fmt.Sprintf("%s out of range (want 1-65535)", what)
	}
	if digits[0] == '0' {
		return 0, fmt.Sprintf("%s has a leading zero (want %d)", what, n)
	}
	return uint16(n), ""
}

// parseRange parses a quoted port "22" or a range "lo-hi".
func parseRange(s string) (PortRange, string) {
	loS, hiS, isRange := strings.Cut(s, "-")
	if !isRange {
		p, problem := parsePort(s, s)
		return PortRange{p, p}, problem
	}
	lo, problem := parsePort(loS, s)
	if problem != "" {
		return PortRange{}, problem
	}
	hi, problem := parsePort(hiS, s)
	if problem != "" {
		return PortRange{}, problem
	}
	if lo > hi {
		return PortRange{}, fmt.Sprintf(`port range %s is backwards (want "%d-%d")`, quoteCut(s), hi, lo)
	}
	return PortRange{lo, hi}, ""
}

// checkOverlaps reports entries that repeat or overlap an earlier one.
func (ps *parser) checkOverlaps(items []portItem) {
	order := make([]portItem, len(items))
	copy(order, items)
	sort.SliceStable(order, func(i, j int) bool { return order[i].r.Lo < order[j].r.Lo })
	var widest *portItem // the entry reaching highest among those sorted so far
	for i := range order {
		it := &order[i]
		if widest != nil && it.r.Lo <= widest.r.Hi {
			// Report at the later of the two in the file, naming the earlier.
			a, b := widest, it
			if posBefore(b.node, a.node) {
				a, b = b, a
			}
			if a.r == b.r {
				ps.errorf(b.node, "duplicate port %s (already listed at %d:%d; keep one)", formatRange(b.r), a.node.Line, a.node.Column)
			} else {
				ps.errorf(b.node, "port %s overlaps %s at %d:%d (want disjoint ports and ranges)", formatRange(b.r), formatRange(a.r), a.node.Line, a.node.Column)
			}
		}
		if widest == nil || it.r.Hi > widest.r.Hi {
			widest = it
		}
	}
}

// posBefore reports whether a comes before b in the file.
func posBefore(a, b *yaml.Node) bool {
	return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
}

// formatRange writes a range as the user would: 22 or 8000-8080.
func formatRange(r PortRange) string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// scalarTag returns the resolved tag of a scalar node ("!!str", "!!int", ...), or "" for anything else.
func scalarTag(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.ShortTag()
}

// isNull reports whether n is an empty or null scalar.
func isNull(n *yaml.Node) bool { return scalarTag(n) == "!!null" }

// describe names what a node holds, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "no value"
	case "!!str":
		return "the string " + quoteCut(n.Value)
	case "!!int":
		return "the integer " + cut(n.Value)
	case "!!float":
		return "the number " + cut(n.Value)
	case "!!bool":
		return "the boolean " + cut(n.Value)
	default:
		return "a value tagged " + quoteCut(tag)
	}
}

// cut shortens s for a message, keeping it one line.
func cut(s string) string {
	const max = 64
	if len(s) > max {
		i := max
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "..."
	}
	return strings.Join(strings.Fields(s), " ")
}

// quoteCut quotes s for a message, shortened; quoting keeps control characters and newlines visible.
func quoteCut(s string) string {
	const max = 64
	if len(s) > max {
		i := max
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return strconv.Quote(s[:i]) + "..."
	}
	return strconv.Quote(s)
}
