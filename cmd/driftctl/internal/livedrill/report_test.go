package livedrill

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// A cordon drill's records, in the order the responder writes them, make
// the report's stages once each, timed from the drill command and from the
// finding's sensing; a verify record that failed shows its error; the
// release completes a cordon drill. The text is the contract an operator
// reads: checked line by line.
func TestReportStagesAndText(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rep := &Report{
		Marker: event.DrillMarker{ID: "d1", Host: "web-3", Mode: event.DrillCordon, Techniques: []string{"write_etc", "exec_tmp"},
			Expires: at(600000)},
		Signer:   "UOPERATOR",
		Run:      &event.DrillRun{Dir: "/var/lib/driftsensor/drill/d1", PID: 4242},
		Started:  t0,
		Incident: "inc-1",
	}
	sensed := decide.Stages{Sensed: at(2), Received: at(3), Decided: at(4)}
	rep.add(decide.Record{Stage: decide.StageDecision, Events: []string{"web-3-7", "web-3-8"}, Stages: sensed})
	again := sensed
	again.Sensed = at(50) // a second decision record: the first time of each stage stays
	rep.add(decide.Record{Stage: decide.StageDecision, Events: []string{"web-3-9"}, Stages: again})
	rep.add(decide.Record{Stage: decide.StageAction, Actuator: "netns", Stages: decide.Stages{Acted: at(10)}})
	rep.add(decide.Record{Stage: decide.StageVerify, Time: at(30), Error: "probe still passes"})
	if rep.Complete {
		t.Fatal("a cordon drill is complete before its release")
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "incomplete: no release record within the wait") {
		t.Errorf("an incomplete cordon drill does not say so:\n%s", buf.String())
	}
	rep.add(decide.Record{Stage: decide.StageRelease, Stages: decide.Stages{Released: at(1000)}})
	if !rep.Complete {
		t.Fatal("the release did not complete the cordon drill")
	}
	if len(rep.Findings) != 3 || len(rep.Records) != 5 {
		t.Errorf("%d findings and %d records, want 3 and 5", len(rep.Findings), len(rep.Records))
	}
	buf.Reset()
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"drill d1 on web-3: mode cordon, techniques write_etc,exec_tmp; marker signed by UOPERATOR, valid until 2026-12-03T12:10:00Z",
		"performed by pid 4242 in /var/lib/driftsensor/drill/d1",
		"incident inc-1: 3 findings matched the marker",
		"",
		"STAGE             AFTER THE DRILL COMMAND  FROM SENSED  ERROR",
		"sensed            2ms                      0s           ",
		"received          3ms                      1ms          ",
		"decided           4ms                      2ms          ",
		"cordoned (netns)  10ms                     8ms          ",
		"verified          30ms                     28ms         probe still passes",
		"released          1s                       998ms        ",
	}
	if got := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("report text:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
