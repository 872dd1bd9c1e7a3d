package pkg

import "testing"

// TestStrictJSON: the log line check refuses what strict ingestion refuses.
func TestStrictJSON(t *testing.T) {
	for line, ok := range map[string]bool{
		`{"level":"info","service":"driftsensor","component":"transport","message":"x"}`: true,
		`{"a":{"b":1,"c":[1,{"b":2}]},"b":[{"a":1},{"a":2}]}`:                            true,
		`{"component":"driftsensor","component":"transport"}`:                            false,
		`{"a":{"b":1,"b":2}}`:   false,
		`{"a":[{"x":1,"x":1}]}`: false,
		`{"a":1`:                false,
		`not json`:              false,
	} {
		if err := strictJSON([]byte(line)); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", line, err, ok)
		}
	}
}
