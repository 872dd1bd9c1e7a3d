package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
)

// Def is what the Dockerfile says the image holds.
type Def struct {
	Copies     []Copy
	User       string
	Entrypoint []string
	Cmd        []string
	args       map[string]string // ARG defaults
}

// Copy is one COPY: sources (with ${VAR}s) into a directory.
type Copy struct {
	Srcs []string
	Dest string
}

// ParseDockerfile reads the subset of the Dockerfile syntax the fleet image
// uses and refuses the rest, naming file:line, so the Dockerfile stays the
// one definition of the image for docker build and for this builder alike.
func ParseDockerfile(file string) (*Def, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &Def{args: map[string]string{}}
	sc := bufio.NewScanner(f)
	from := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := fmt.Sprintf("%s:%d", file, n)
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			if rest != "scratch" {
				return nil, fmt.Errorf("%s: FROM %s: only FROM scratch is built here (static binaries, nothing else)", at, rest)
			}
			from = true
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			d.args[name] = def
		case "COPY":
			f := strings.Fields(rest)
			if len(f) < 2 || strings.HasPrefix(f[0], "--") {
				return nil, fmt.Errorf("%s: COPY %s: want COPY SRC... DEST (no flags)", at, rest)
			}
			dest := f[len(f)-1]
			if !strings.HasSuffix(dest, "/") || !path.IsAbs(dest) {
				return nil, fmt.Errorf("%s: COPY destination %q: want an absolute directory ending in /", at, dest)
			}
			d.Copies = append(d.Copies, Copy{Srcs: f[:len(f)-1], Dest: dest})
		case "USER":
			d.User = rest
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				return nil, fmt.Errorf("%s: %s %s: want the exec form, a JSON list (%v)", at, instr, rest, err)
			}
			if strings.ToUpper(instr) == "CMD" {
				d.Cmd = v
			} else {
				d.Entrypoint = v
			}
		default:
			return nil, fmt.Errorf("%s: %s: this builder knows FROM scratch, ARG, COPY, USER, ENTRYPOINT and CMD; add %s to deploy/image if the image needs it", at, instr, instr)
		}
		if !from {
			return nil, fmt.Errorf("%s: %s before FROM", at, instr)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !from || len(d.Copies) == 0 || len(d.Entrypoint) == 0 {
		return nil, fmt.Errorf("%s: want FROM scratch, a COPY and an ENTRYPOINT", file)
	}
	return d, nil
}

var argRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// Files maps each path in the image to the file it comes from, with the
// ARGs given (the Dockerfile's defaults for the others).
func (d *Def) Files(args map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, c := range d.Copies {
		for _, src := range c.Srcs {
			var missing string
			s := argRef.ReplaceAllStringFunc(src, func(ref string) string {
				m := argRef.FindStringSubmatch(ref)
				name := m[1] + m[2]
				if v, ok := args[name]; ok {
					return v
				}
				if v, ok := d.args[name]; ok {
					return v
				}
				missing = name
				return ""
			})
			if missing != "" {
				return nil, fmt.Errorf("COPY %s: no ARG %s", src, missing)
			}
			out[path.Join(c.Dest, path.Base(s))] = s
		}
	}
	return out, nil
}
