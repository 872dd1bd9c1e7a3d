package proc

import "bytes"

// The runtimes' cgroup names, systemd driver: <prefix><id>.scope.
var scopePrefixes = [][]byte{
	[]byte("docker-"),
	[]byte("cri-containerd-"),
	[]byte("crio-"),
	[]byte("libpod-"),
}

// ContainerID returns the id of the container a cgroup path belongs to, or ""
// if the path names none. It recognises the systemd driver's scopes
// (docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
// libpod-<id>.scope), containerd's "<slice>:cri-containerd:<id>" form, and the
// cgroupfs driver's bare id component (/docker/<id>,
// /kubepods/<qos>/pod<uid>/<id>). An id is 64 lowercase hex digits, which keeps
// conmon scopes (crio-conmon-<id>.scope) and pod slices out. Nested containers
// give the innermost id.
func ContainerID(cgroupPath string) string {
	return string(containerID([]byte(cgroupPath)))
}

// containerID is ContainerID on bytes; the result aliases p.
func containerID(p []byte) []byte {
	for len(p) > 0 {
		i := bytes.LastIndexByte(p, '/')
		c := p[i+1:]
		if i < 0 {
			p = nil
		} else {
			p = p[:i]
		}
		if id := componentID(c); id != nil {
			return id
		}
	}
	return nil
}

// componentID returns the container id named by one path component, if any.
func componentID(c []byte) []byte {
	if isID(c) {
		return c
	}
	if i := bytes.LastIndexByte(c, ':'); i >= 0 {
		if id := c[i+1:]; isID(id) && bytes.HasSuffix(c[:i], []byte(":cri-containerd")) {
			return id
		}
		return nil
	}
	if s, ok := bytes.CutSuffix(c, []byte(".scope")); ok {
		for _, pre := range scopePrefixes {
			if id, ok := bytes.CutPrefix(s, pre); ok && isID(id) {
				return id
			}
		}
	}
	return nil
}

// isID reports whether b looks like a container id: 64 lowercase hex digits.
func isID(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
