package main

// Golden tests of the reports, as golang.org/x/perf's benchstat tests its
// output: each testdata/golden/NAME.json is the JSON report of a real run
// (`stress run -json`, `stress chaos -json`); its text form, as WriteText
// prints it, must equal NAME.golden byte for byte, and its JSON form must
// read back into the same text. Run with -update to rewrite the .golden
// files after an intended change of the text report.

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .golden files of the report tests")

func TestReportGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := renderText(t, name, data)
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("text report of %s differs from %s:\n--- got:\n%s--- want:\n%s", in, golden, got, want)
			}
		})
	}
}

// renderText reads a JSON report, prints it as text, and checks that its
// JSON form reads back to the same text.
func renderText(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var text, again bytes.Buffer
	if strings.HasPrefix(name, "chaos") {
		var rep, back ChaosReport
		decode(t, data, &rep)
		rep.WriteText(&text)
		roundTrip(t, &rep, &back)
		back.WriteText(&again)
	} else {
		var rep, back Report
		decode(t, data, &rep)
		rep.WriteText(&text)
		roundTrip(t, &rep, &back)
		back.WriteText(&again)
	}
	if !bytes.Equal(text.Bytes(), again.Bytes()) {
		t.Errorf("the JSON form does not read back to the same report:\n%s\n---\n%s", text.Bytes(), again.Bytes())
	}
	return text.Bytes()
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		t.Fatal(err)
	}
}

// roundTrip writes rep as WriteJSON does and reads it into back.
func roundTrip(t *testing.T, rep interface{ WriteJSON(w io.Writer) error }, back any) {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	decode(t, b.Bytes(), back)
}
