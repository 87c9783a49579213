package bundle

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
)

// A role's recorder: its events and cases carry the role, its console
// goes to console-ROLE.log (secrets masked), its artifacts under
// artifacts/ROLE/, and junit.xml groups its cases in a suite of its own.
func TestRoleRecorder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	b, err := Create(dir, Result{Job: "j", Stages: []Stage{{Name: "s"}}}, Options{Secrets: []string{"hunter2"}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := b.ForRole("server", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := b.ForRole("client", nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(srv.Console(), "server boots, password hunter2\n")
	fmt.Fprintf(cli.Console(), "client boots\n")
	srv.Emit("call", map[string]any{"builtin": "target.run"})
	cli.TestCase(builtins.TestCase{Name: "fetch", Result: "pass", Stage: "s"})
	srv.TestCase(builtins.TestCase{Name: "fetch", Result: "fail", Stage: "s"})
	rel, err := cli.Artifact("tmp/x.txt", strings.NewReader("x"), "")
	if err != nil || rel != "artifacts/client/tmp/x.txt" {
		t.Errorf("Artifact = %q, %v; want artifacts/client/tmp/x.txt", rel, err)
	}
	b.Update(func(r *Result) { r.Status = "fail" })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string]string{"server": "server boots, password ******\n", "client": "client boots\n"} {
		got, err := os.ReadFile(filepath.Join(dir, "console-"+role+".log"))
		if err != nil || !strings.Contains(string(got), strings.TrimSuffix(want, "\n")) || strings.Contains(string(got), "hunter2") {
			t.Errorf("console-%s.log = %q, %v; want %q, secret masked", role, got, err, want)
		}
	}
	evs, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	for _, want := range []string{`"builtin":"target.run"`, `"name":"fetch","result":"pass","role":"client"`} {
		found := false
		for _, line := range strings.Split(string(evs), "\n") {
			if strings.Contains(line, want) && (strings.Contains(line, `"role":"server"`) || strings.Contains(line, `"role":"client"`)) {
				found = true
			}
		}
		if !found {
			t.Errorf("events.jsonl has no event with the role holding %s:\n%s", want, evs)
		}
	}
	var res Result
	data, _ := os.ReadFile(filepath.Join(dir, "result.json"))
	if err := json.Unmarshal(data, &res); err != nil || len(res.Tests) != 2 || res.Tests[0].Role != "client" || res.Tests[1].Role != "server" {
		t.Errorf("result.json tests = %+v, %v; want the client's then the server's", res.Tests, err)
	}
	out, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(out, &got); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, out)
	}
	suites := map[string][]string{}
	for _, s := range got.Suites {
		for _, c := range s.Cases {
			suites[s.Name] = append(suites[s.Name], c.Name+"@"+c.Classname)
		}
	}
	want := map[string][]string{"j.s.client": {"client.fetch@j.s.client"}, "j.s.server": {"server.fetch@j.s.server"}}
	for name, cases := range want {
		if strings.Join(suites[name], ",") != strings.Join(cases, ",") {
			t.Errorf("junit suite %s = %v; want %v (all: %v)", name, suites[name], cases, suites)
		}
	}
}
