package gate

import (
	"slices"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ports    []uint16
		err      string
	}{
		{in: "192.0.2.250", want: "192.0.2.250/32"},
		{in: "192.0.2.250:4222", want: "192.0.2.250/32:4222", ports: []uint16{4222}},
		{in: "10.1.2.3/8:22,2222", want: "10.0.0.0/8:22,2222", ports: []uint16{22, 2222}},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "[2001:db8::1]:4222", want: "[2001:db8::1/128]:4222", ports: []uint16{4222}},
		{in: "[2001:db8::/32]", want: "2001:db8::/32"},
		{in: "192.0.2.1:0", err: "want 1-65535"},
		{in: "192.0.2.1:70000", err: "want 1-65535"},
		{in: "192.0.2.1:1,2,3,4,5,6,7,8,9", err: "at most 8"},
		{in: "nats.example:4222", err: "want CIDR"},
		{in: "[2001:db8::1", err: "missing ']'"},
		{in: "10.0.0.0/33", err: "10.0.0.0/33"},
	} {
		r, err := ParseRule(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRule(%q) = %v, %v; want error with %q", tc.in, r, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.in, err)
			continue
		}
		if r.String() != tc.want || !slices.Equal(r.Ports, tc.ports) {
			t.Errorf("ParseRule(%q) = %s %v, want %s %v", tc.in, r, r.Ports, tc.want, tc.ports)
		}
	}
}
