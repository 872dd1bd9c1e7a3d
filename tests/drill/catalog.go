// Package drill runs chaos drills: a catalog of attacker techniques (ATT&CK
// ids) played on sealed test-bed hosts, each checked for its exact finding
// and timed through every stage of the response, from the mutation to the
// host's cordon and destroy; negative controls must stay silent. It writes
// the results as a terminal table, JSON and a self-contained HTML report.
//
// Techniques never touch the machine's own files: each host gets a root
// directory of its own (etc, usr, var, ...) that its policy protects, and
// every path in the catalog is inside that root.
package drill

import (
	"bytes"
	_ "embed"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/driftsensor/driftsensor/sensor/event"
)

//go:embed catalog.yaml
var catalogYAML []byte

// Technique is one row of the catalog.
type Technique struct {
	ID      string     `yaml:"id" json:"id"`
	Attack  string     `yaml:"attack" json:"attack,omitempty"` // MITRE ATT&CK technique id
	Tactic  string     `yaml:"tactic" json:"tactic"`
	Name    string     `yaml:"name" json:"name"`
	Control bool       `yaml:"control" json:"control,omitempty"` // a negative control: must produce nothing
	Pre     [][]string `yaml:"pre" json:"pre,omitempty"`         // silent actor steps before the timed one
	Act     []string   `yaml:"act" json:"act"`                   // the timed actor operation
	Want    *Want      `yaml:"want" json:"want,omitempty"`
}

// Want is the one finding a technique must produce. Paths are inside the
// host's root as written; the finding carries them under the root.
type Want struct {
	Kind    event.Kind `yaml:"kind" json:"kind"`
	Action  string     `yaml:"action" json:"action"`
	Path    string     `yaml:"path" json:"path,omitempty"`
	NewPath string     `yaml:"new_path" json:"new_path,omitempty"`
	Target  string     `yaml:"target" json:"target,omitempty"`
	Port    uint16     `yaml:"port" json:"port,omitempty"`
	Family  string     `yaml:"family" json:"family,omitempty"`
	Reasons []string   `yaml:"reasons" json:"reasons,omitempty"`
}

// String is the finding as the report shows it.
func (w *Want) String() string {
	if w == nil {
		return "nothing"
	}
	s := string(w.Kind) + "/" + w.Action
	switch {
	case w.Path != "" && w.NewPath != "":
		s += " " + w.Path + " -> " + w.NewPath
	case w.Path != "" && w.Target != "":
		s += " " + w.Path + " -> " + w.Target
	case w.Path != "":
		s += " " + w.Path
	case w.Port != 0:
		s += fmt.Sprintf(" %s port %d", w.Family, w.Port)
	}
	if len(w.Reasons) > 0 {
		s += " [" + strings.Join(w.Reasons, ",") + "]"
	}
	return s
}

// Catalog returns the built-in catalog.
func Catalog() []Technique {
	c, err := ParseCatalog("catalog.yaml", catalogYAML)
	if err != nil {
		panic(err) // the embedded file is checked by TestCatalogValid
	}
	return c
}

// ParseCatalog reads and checks a catalog; errors name the file, the
// technique and what to fix.
func ParseCatalog(name string, data []byte) ([]Technique, error) {
	var c []Technique
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	seen := map[string]bool{}
	for i, t := range c {
		where := fmt.Sprintf("%s: technique %d (%q)", name, i+1, t.ID)
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if seen[t.ID] {
			return nil, fmt.Errorf("%s: id used twice (ids must be unique)", where)
		}
		seen[t.ID] = true
	}
	return c, nil
}

var (
	idRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	attackRE = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)
)

func (t Technique) check() error {
	switch {
	case !idRE.MatchString(t.ID):
		return fmt.Errorf("id %q: use lower-case letters, digits and '-'", t.ID)
	case t.Name == "" || t.Tactic == "":
		return fmt.Errorf("name and tactic are required")
	case len(t.Act) == 0 || !knownOp(t.Act[0]):
		return fmt.Errorf("act %q: want one of the actor operations %s", t.Act, strings.Join(ops, ", "))
	case t.Control && (t.Want != nil || t.Attack != ""):
		return fmt.Errorf("a control has no want and no attack id: it must produce nothing")
	case !t.Control && !attackRE.MatchString(t.Attack):
		return fmt.Errorf("attack %q: want a MITRE ATT&CK id such as T1543.002", t.Attack)
	case !t.Control && t.Want == nil:
		return fmt.Errorf("want is required (or control: true)")
	}
	for _, p := range t.Pre {
		if len(p) == 0 || !knownOp(p[0]) {
			return fmt.Errorf("pre step %q: want one of the actor operations %s", p, strings.Join(ops, ", "))
		}
	}
	if w := t.Want; w != nil {
		switch {
		case w.Action == "":
			return fmt.Errorf("want names no action")
		case w.Kind == event.KindFile && w.Path == "":
			return fmt.Errorf("a file want needs its path")
		case w.Kind == event.KindNet && (w.Port == 0 || w.Family == ""):
			return fmt.Errorf("a net want needs its port and family")
		case w.Kind != event.KindFile && w.Kind != event.KindExec && w.Kind != event.KindNet:
			return fmt.Errorf("want kind %q: want file, exec or net", w.Kind)
		}
	}
	return nil
}

// Select keeps the techniques whose id, tactic or ATT&CK id matches one of
// the comma-separated shell patterns (path.Match: *, ?, [...]); "" or "*"
// keeps all. A pattern that matches nothing is an error, so a typo cannot
// run an empty drill.
func Select(c []Technique, patterns string) ([]Technique, error) {
	if patterns == "" {
		patterns = "*"
	}
	var out []Technique
	for _, p := range strings.Split(patterns, ",") {
		p = strings.TrimSpace(p)
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("--techniques %q: bad pattern %q: %v", patterns, p, err)
		}
		n := 0
		for _, t := range c {
			if match(p, t.ID) || match(p, t.Tactic) || match(p, t.Attack) {
				n++
				if !slices.ContainsFunc(out, func(o Technique) bool { return o.ID == t.ID }) {
					out = append(out, t)
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("--techniques %q: %q matches no technique id, tactic or ATT&CK id (driftctl drill --list shows them)", patterns, p)
		}
	}
	return out, nil
}

func match(p, s string) bool {
	ok, _ := path.Match(p, s)
	return s != "" && ok
}
