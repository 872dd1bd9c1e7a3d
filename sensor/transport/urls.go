package transport

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// URLSchemes are the schemes a NATS client accepts.
var URLSchemes = []string{"nats", "tls", "ws", "wss"}

// CheckURLs parses a comma-separated list of NATS server URLs, as the
// --nats flags take them, and says which one is wrong and why. A URL with
// no scheme is host:port, which nats.go reads as nats://host:port. Checking
// at start matters: the client retries an unusable URL forever, so a typo
// would spool findings until the disk fills instead of failing.
func CheckURLs(list string) error {
	if strings.TrimSpace(list) == "" {
		return fmt.Errorf("no URL (want e.g. nats://127.0.0.1:4222)")
	}
	for _, raw := range strings.Split(list, ",") {
		u := strings.TrimSpace(raw)
		if err := checkURL(u); err != nil {
			return fmt.Errorf("%q: %w", u, err)
		}
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return fmt.Errorf("empty URL in the list (want nats://host:port[,nats://host:port...])")
	}
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	ok := false
	for _, sc := range URLSchemes {
		ok = ok || u.Scheme == sc
	}
	if !ok {
		return fmt.Errorf("scheme %q: want one of %s", u.Scheme, strings.Join(URLSchemes, ", "))
	}
	if u.Hostname() == "" {
		return fmt.Errorf("no host (want %s://host:port)", u.Scheme)
	}
	if strings.ContainsAny(u.Hostname(), " \t") || (strings.Contains(u.Hostname(), ":") && net.ParseIP(u.Hostname()) == nil) {
		return fmt.Errorf("host %q is not a host name or IP address", u.Hostname())
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q: want 1-65535", p)
		}
	}
	if u.Path != "" && u.Path != "/" && u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("path %q: a NATS URL has none (want %s://host:port)", u.Path, u.Scheme)
	}
	return nil
}
