package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/driftsensor/driftsensor/tests/testbed"
)

const testbedHelp = "testbed up --hosts N [--name NAME] [--policy FILE] [--seal] [--rule R]... | testbed down [--name NAME]"

func init() {
	commandDocs["testbed"] = struct{ desc, example string }{
		"Test hosts on this machine (root): up makes N hosts, each a network namespace and a cgroup with a veth on a bridge\n" +
			"and an address from 192.0.2.0/24, its own driftsensor scoped to its cgroup with its own NATS credential, a NATS\n" +
			"server and a driftresponder on loopback; it prints how to reach each host and runs until interrupted. down\n" +
			"removes a bed by its name prefix, also what an up that was killed left behind.",
		"driftctl testbed up --hosts 3 --seal --rule kind=file,action=cordon",
	}
}

// testbed runs test hosts on this machine (tests/testbed): up builds them
// with the pipeline and stays until interrupted; down removes a bed by its
// name prefix, also what a killed up left.
func (c *cli) testbed(args []string) error {
	fs := flag.NewFlagSet("testbed", flag.ContinueOnError)
	name := fs.String("name", "bed", "bed name, 1-6 lowercase letters: every namespace, link and cgroup is named "+testbed.CLIPrefix+"NAME...")
	n := fs.Int("hosts", 2, "up: number of hosts (h1, h2, ...), 1-100")
	policy := fs.String("policy", "", "up: every sensor's policy file (default: driftsensor's built-in policy)")
	seal := fs.Bool("seal", false, "up: seal every host at start")
	var rules []string
	fs.Func("rule", "up: responder rule, e.g. 'kind=file,action=cordon' (repeatable)", func(r string) error { rules = append(rules, r); return nil })
	sensor := fs.String("driftsensor", "", "up: driftsensor binary (default: next to driftctl, else on $PATH)")
	responder := fs.String("driftresponder", "", "up: driftresponder binary (default: next to driftctl, else on $PATH)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || (rest[0] != "up" && rest[0] != "down") {
		return usagef("want up or down")
	}
	up := rest[0] == "up"
	if err := testbed.ValidName(*name); err != nil {
		return usagef("--name: %v", err)
	}
	if up && (*n < 1 || *n > 100) {
		return usagef("--hosts %d: want 1 to 100", *n)
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: a test bed makes network namespaces and cgroups and loads eBPF programs")
	}
	prefix := testbed.CLIPrefix + *name
	if !up {
		return c.testbedDown(prefix)
	}
	if *sensor, err = sibling(*sensor, "driftsensor"); err != nil {
		return err
	}
	if *responder, err = sibling(*responder, "driftresponder"); err != nil {
		return err
	}
	if len(testbed.Leftovers(prefix)) > 0 {
		return fmt.Errorf("a test bed called %q exists (or its leftovers do): driftctl testbed down --name %s", *name, *name)
	}
	hosts := make([]string, *n)
	for i := range hosts {
		hosts[i] = "h" + strconv.Itoa(i+1)
	}
	var rargs []string
	for _, r := range rules {
		rargs = append(rargs, "--rule", r)
	}
	p, err := testbed.Up(*name, hosts, testbed.PipelineConfig{Sensor: *sensor, Responder: *responder, Policy: *policy, Seal: *seal, ResponderArgs: rargs})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "up.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return errors.Join(err, p.Close())
	}
	fmt.Fprintf(c.stdout, "test bed %s: bridge %s, cgroup %s\nNATS %s (driftctl --nats %s --nats-nkey %s status)\ncredentials %s\nresponder log %s\n\n",
		*name, p.Bridge, p.Cgroup, p.URL, p.URL, p.AdminSeed, p.CredsDir, p.ResponderLog)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tNETNS\tCGROUP\tSENSOR (findings on drift.v1.<sensor>.<kind>)\tCTL SUBJECT\tSEED\tFINDINGS")
	for _, h := range hosts {
		host, s := p.Host(h), p.Sensors[h]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h, host.Addr, host.Netns, host.Cgroup, s.Host, s.CtlSubject(), s.Seed, s.Findings)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\na shell in a host: sh -c 'echo $$ > CGROUP/cgroup.procs && exec nsenter --net=/run/netns/NETNS sh'\nready; Ctrl-C or `driftctl testbed down --name %s` removes it\n", *name)
	<-c.ctx.Done()
	return p.Close()
}

// testbedDown stops the up process of the bed, if it still runs, so it
// removes what it made itself, then removes by name what is left.
func (c *cli) testbedDown(prefix string) error {
	if raw, err := os.ReadFile(filepath.Join(testbed.WorkDir(prefix), "up.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), "testbed") {
				_ = syscall.Kill(pid, syscall.SIGTERM)
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if syscall.Kill(pid, 0) != nil {
						break
					}
				}
			}
		}
	}
	if err := testbed.Down(prefix); err != nil {
		return err
	}
	if left := testbed.Leftovers(prefix); len(left) > 0 {
		return fmt.Errorf("still there after down: %s", strings.Join(left, ", "))
	}
	fmt.Fprintf(c.stdout, "test bed %s removed\n", strings.TrimPrefix(prefix, testbed.CLIPrefix))
	return nil
}

// sibling returns path, or else the binary called name next to driftctl,
// or else on $PATH.
func sibling(path, name string) (string, error) {
	if path != "" {
		return path, nil
	}
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), name); exists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to driftctl nor on $PATH: run make build, or pass --%s", name, name)
	}
	return p, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
