// Package creds generates per-host NATS credentials (nkeys) and the
// nats-server configuration whose permissions let each host publish only under
// its own name, read only its own ctl subject and host state, and never change
// that state: a root user on a sealed host cannot unseal it.
package creds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Roles of the users Generate writes.
const (
	RoleHost      = "host"      // one per sensor: publishes its own findings and heartbeats
	RoleResponder = "responder" // driftresponder: reads every finding, sends commands, changes states
	RoleAdmin     = "admin"     // driftctl: everything
)

// Files Generate writes in its directory.
const (
	ServerConfigFile = "server.conf"    // nats-server -c server.conf
	AuthConfigFile   = "auth.conf"      // included by server.conf: users and permissions
	ResponderSeed    = "responder.nk"   // the responder's nkey seed
	AdminSeed        = "admin.nk"       // driftctl's nkey seed
	HostSeedDir      = "hosts"          // hosts/<host>.nk: each sensor's nkey seed
	DefaultListen    = "127.0.0.1:4222" // where the generated server listens unless told otherwise
)

// Options shape the generated server configuration.
type Options struct {
	Listen     string // host:port the server listens on; default DefaultListen; port -1 picks a free one
	StoreDir   string // JetStream store; default <dir>/jetstream
	ServerName string // default "driftsensor"
	// Rotate replaces existing seeds; by default a seed already in the
	// directory is kept, so adding a host does not re-key the fleet.
	Rotate bool
}

// User is one generated identity.
type User struct {
	Name      string      // host name, "responder" or "admin"
	Role      string      // RoleHost, RoleResponder or RoleAdmin
	PublicKey string      // the nkey the server knows (U...)
	SeedFile  string      // the secret seed, mode 0600: give it to this user only
	Created   bool        // false when an existing seed was kept
	Perms     Permissions // what the server lets it do
}

// Result lists what Generate wrote.
type Result struct {
	Dir          string
	ServerConfig string // path of server.conf
	AuthConfig   string // path of auth.conf
	Users        []User // hosts in the order given, then responder and admin
}

// User returns the generated user called name, if any.
func (r *Result) User(name string) (User, bool) {
	for _, u := range r.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// Generate writes, into dir, an nkey seed per host plus the responder's and
// the admin's, and a nats-server configuration (server.conf including
// auth.conf) granting each the permissions of its role. It validates every
// host name first and writes nothing when one is bad.
func Generate(hosts []string, dir string, opts Options) (*Result, error) {
	if dir == "" {
		return nil, errors.New("creds: no output directory")
	}
	if len(hosts) == 0 {
		return nil, errors.New("creds: no hosts (give at least one host name)")
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if err := event.ValidHost(h); err != nil {
			return nil, fmt.Errorf("creds: %w", err)
		}
		if seen[h] {
			return nil, fmt.Errorf("creds: host %q given twice", h)
		}
		seen[h] = true
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.ServerName == "" {
		opts.ServerName = "driftsensor"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("creds: output directory %s: %w", dir, err)
	}
	dir = abs
	if opts.StoreDir == "" {
		opts.StoreDir = filepath.Join(dir, "jetstream")
	}
	if opts.StoreDir, err = filepath.Abs(opts.StoreDir); err != nil {
		return nil, fmt.Errorf("creds: JetStream directory %s: %w", opts.StoreDir, err)
	}
	for what, s := range map[string]string{"listen address": opts.Listen, "JetStream directory": opts.StoreDir, "server name": opts.ServerName, "output directory": dir} {
		if strings.ContainsAny(s, "\"\\\n\r") {
			return nil, fmt.Errorf("creds: %s %q: quotes, backslashes and newlines cannot go into the server configuration", what, s)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, HostSeedDir), 0o700); err != nil {
		return nil, fmt.Errorf("creds: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creds: %w", err)
	}

	res := &Result{Dir: dir, ServerConfig: filepath.Join(dir, ServerConfigFile), AuthConfig: filepath.Join(dir, AuthConfigFile)}
	add := func(name, role, seedFile string, perms Permissions) error {
		pub, created, err := ensureSeed(seedFile, opts.Rotate)
		if err != nil {
			return err
		}
		res.Users = append(res.Users, User{Name: name, Role: role, PublicKey: pub, SeedFile: seedFile, Created: created, Perms: perms})
		return nil
	}
	for _, h := range hosts {
		if err := add(h, RoleHost, filepath.Join(dir, HostSeedDir, h+".nk"), HostPermissions(h)); err != nil {
			return nil, err
		}
	}
	if err := add("responder", RoleResponder, filepath.Join(dir, ResponderSeed), ResponderPermissions()); err != nil {
		return nil, err
	}
	if err := add("admin", RoleAdmin, filepath.Join(dir, AdminSeed), AdminPermissions()); err != nil {
		return nil, err
	}
	if err := writeFile(res.AuthConfig, authConfig(res.Users), 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(res.ServerConfig, serverConfig(opts), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// ensureSeed reads the user seed in path, or creates one, and returns its public key.
func ensureSeed(path string, rotate bool) (pub string, created bool, err error) {
	if !rotate {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			kp, err := nkeys.ParseDecoratedNKey(b)
			if err != nil {
				return "", false, fmt.Errorf("creds: existing seed %s: %w (remove it, or rotate)", path, err)
			}
			defer kp.Wipe()
			pub, err := kp.PublicKey()
			if err != nil {
				return "", false, fmt.Errorf("creds: existing seed %s: %w", path, err)
			}
			if !nkeys.IsValidPublicUserKey(pub) {
				return "", false, fmt.Errorf("creds: existing seed %s is not a user nkey (want a seed starting with SU)", path)
			}
			// A seed someone else could read is no longer a secret; keep it
			// private even if it was copied in with a lax mode.
			if err := os.Chmod(path, 0o600); err != nil {
				return "", false, fmt.Errorf("creds: %w", err)
			}
			return pub, false, nil
		case !errors.Is(err, os.ErrNotExist):
			return "", false, fmt.Errorf("creds: %w", err)
		}
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", false, fmt.Errorf("creds: create nkey: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", false, fmt.Errorf("creds: nkey seed: %w", err)
	}
	if pub, err = kp.PublicKey(); err != nil {
		return "", false, fmt.Errorf("creds: nkey public key: %w", err)
	}
	if err := writeFile(path, append(seed, '\n'), 0o600); err != nil {
		return "", false, err
	}
	return pub, true, nil
}

// writeFile replaces path atomically, so a reader (or a crash) never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("creds: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("creds: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("creds: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("creds: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("creds: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("creds: %w", err)
	}
	return nil
}
