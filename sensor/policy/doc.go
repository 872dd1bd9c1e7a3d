// Package policy parses and strictly validates the one YAML policy file of a host.
//
// Policy is code: the file is versioned, its hash travels in every heartbeat, and a bad file is refused
// with the place and the reason, never half applied.
//
// # File format
//
// A policy is exactly one YAML document: a mapping with the keys below. Only version is required; every
// other key has the default shown. Unknown keys are errors at every level, so a typo cannot silently
// turn a rule off. example.yaml in this directory is a commented example.
//
//	version: 1            # required, and 1 is the only version
//	seal_on_start: false  # seal (record the baseline) as soon as the sensor starts
//	scope:
//	  cgroups: []         # cgroup v2 paths such as /drift/host1 (absolute in the cgroup2 hierarchy);
//	                      # empty: the whole host
//	protect: ["/"]        # path prefixes where any mutation is drift; not empty
//	exceptions:           # writable path prefixes inside protected ones; exec from them stays drift
//	  [/dev, /proc, /sys, /run, /tmp, /var/tmp, /var/log]
//	exec:
//	  image_paths:        # directories exec is allowed from (when the file is not tainted)
//	    [/usr, /bin, /sbin, /lib, /lib64, /opt]
//	  image_files: []     # single files exec is allowed from
//	  interpreters:       # programs whose script argument (python3 /tmp/x.py) is judged like an exec, by
//	                      # place and taint, when the program opens it: names without a path or version
//	    [sh, bash, dash, python, perl, ruby, node, php]   # (python3.11 matches python)
//	net:
//	  allowed_ports: []   # ports that may be bound or listened on: 22 or "8000-8080"
//	  deny_binds: true    # refuse any other bind in the kernel
//	reflex:
//	  kill: false         # SIGKILL the actor in the kernel at detection
//	  cordon: false       # set the host's cordon flag in the kernel at detection
//	kernel:               # kernel settings and raw devices are part of the seal: opening for writing a file
//	                      # under /proc/sys, a /sys attribute, a block device under a protected file system,
//	                      # /dev/mem, /dev/kmem or /dev/port is drift, wherever the path rules put them
//	  allow_settings: []  # files under /proc/sys or /sys that may be written, e.g. /proc/sys/vm/drop_caches
//	                      # (a /sys path through symlinks is resolved when the policy is applied)
//	  allow_devices: []   # device files under /dev that may be opened for writing, e.g. /dev/sdb
//
// Values must have the YAML type shown: lists are lists (a single string is not a list of one), booleans
// are true or false (not yes/no), ports are decimal integers or "lo-hi" strings in 1-65535 with lo <= hi.
// A key written with no value is null, which is an error, not the default: omit the key for the default.
// Anchors, aliases and merge keys are refused, so what is read is what is written.
//
// # Paths
//
// Every path is absolute, with no empty ("//"), "." or ".." component and no control character (NUL
// included), and at most 255 bytes as the kernel matches it, trailing slash included: 254 for a
// directory, 255 for an exec.image_files entry, 4095 for a cgroup (resolved in user space). A list must
// not hold the same path twice.
// Protect, exceptions, exec.image_paths and scope.cgroups entries name directories: a trailing slash may
// be written and is dropped, so "/var/log/" and "/var/log" are the same entry. exec.image_files entries
// name single files and must not end in a slash. Which kind an entry is comes from the list it is in,
// never from the file system: Parse reads no file but the policy.
//
// The kernel matches paths by longest prefix. Rules and ImageRules give directory prefixes with a trailing
// slash ("/var/log/" matches "/var/log/x" but not "/var/logx"; the root stays "/") and exact files without
// one. So a nested entry overrides its parent: protect "/" with exception "/var/log" leaves /var/log
// writable, and a protect entry under an exception protects that subtree again.
//
// Every exception must lie strictly under a protect entry, or it exempts nothing and is refused. When
// exceptions is omitted, the default exceptions that lie strictly under a protect entry apply and the
// others are left out, so protect: [/etc] alone protects /etc with no exception.
//
// # Errors
//
// Parse reports every problem it finds (at most 10, sorted by position), one per line, as
//
//	FILE:LINE:COL: what is wrong (what would be right)
//
// for example policy.yaml:12:5: unknown action "cordn" (want alert, cordon, destroy). LINE and COL are
// 1-based. For YAML syntax errors the parser gives only a line, so COL is 1. Each line is an *Error;
// errors.As finds the first one.
package policy
