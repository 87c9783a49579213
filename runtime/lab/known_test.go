package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKnownIssues(t *testing.T) {
	dir := t.TempDir()
	if got, err := LoadKnownIssues(dir); err != nil || got != nil {
		t.Errorf("LoadKnownIssues(no file) = %v, %v, want none and no error", got, err)
	}
	src := `# the lab's known issues
known_issue(id = "LAB-12", url = "https://tracker.example/LAB-12", title = "SOL drops after reset",
    error_class = "device", stage = "boot", builtin = "sol.expect",
    error = "no match for .login:", console = "ipmi: SOL deactivated")
known_issue(id = "LAB-13", test = "^disk-", error_class = "test")
`
	os.WriteFile(filepath.Join(dir, KnownIssuesFile), []byte(src), 0o644)
	got, err := LoadKnownIssues(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("LoadKnownIssues = %d issues, want 2", len(got))
	}
	k := got[0]
	if k.ID != "LAB-12" || k.URL != "https://tracker.example/LAB-12" || k.ErrorClass != "device" || k.Stage != "boot" ||
		k.Builtin != "sol.expect" || k.Error.String() != "no match for .login:" || k.Console.String() != "ipmi: SOL deactivated" ||
		k.Title != "SOL drops after reset" || !strings.HasSuffix(k.Pos, KnownIssuesFile+":2:12") {
		t.Errorf("LoadKnownIssues()[0] = %+v, want LAB-12 with every key", k)
	}
	if got[1].Test.String() != "^disk-" || got[1].Error != nil {
		t.Errorf("LoadKnownIssues()[1] = %+v, want LAB-13 with test only", got[1])
	}
}

// Every mistake in known-issues.star names the file, the line (of the key
// when it is one key's) and what is wrong.
func TestLoadKnownIssuesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"bad error regexp", "known_issue(id = \"LAB-1\",\n    stage = \"boot\",\n    error = \"(unclosed\")\n",
			[]string{KnownIssuesFile + ":3:5: known_issue LAB-1: error = \"(unclosed\": error parsing regexp: missing closing )"}},
		{"bad console regexp", "known_issue(id = \"LAB-2\", console = \"a**\")\n",
			[]string{KnownIssuesFile + ":1:27: known_issue LAB-2: console = \"a**\": error parsing regexp: invalid nested repetition operator"}},
		{"bad test regexp", "\nknown_issue(id = \"LAB-3\", test = \"[z-a]\")\n",
			[]string{KnownIssuesFile + ":2:27: known_issue LAB-3: test = \"[z-a]\": error parsing regexp: invalid character class range"}},
		{"unknown key", "known_issue(id = \"LAB-4\", stge = \"boot\")\n",
			[]string{KnownIssuesFile + ":1:12: known_issue: unexpected keyword argument \"stge\""}},
		{"no id", "known_issue(stage = \"boot\")\n", []string{KnownIssuesFile + ":1:12: known_issue: missing argument for id"}},
		{"bad class", "known_issue(id = \"LAB-5\", error_class = \"hardware\")\n",
			[]string{KnownIssuesFile + ":1:27: known_issue LAB-5: error_class = \"hardware\" is not one of infra, device, job, canceled, test"}},
		{"empty", "known_issue(id = \"LAB-6\", url = \"https://x\")\n",
			[]string{KnownIssuesFile + ":1:13: known_issue LAB-6: the signature is empty and would match every failure"}},
		{"twice", "known_issue(id = \"LAB-7\", stage = \"a\")\nknown_issue(id = \"LAB-7\", stage = \"b\")\n",
			[]string{KnownIssuesFile + ":2:13: known_issue LAB-7: id \"LAB-7\" is given twice"}},
		{"syntax", "known_issue(id = \"LAB-8\"\n", []string{KnownIssuesFile + ":2:1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, KnownIssuesFile), []byte(tc.src), 0o644)
			_, err := LoadKnownIssues(dir)
			if err == nil {
				t.Fatalf("LoadKnownIssues(%q) = no error, want %q", tc.src, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), filepath.Join(dir, w)) && !strings.Contains(err.Error(), w) {
					t.Errorf("LoadKnownIssues(%q) = %q, want %q", tc.src, err, filepath.Join(dir, w))
				}
			}
			if !strings.HasPrefix(err.Error(), filepath.Join(dir, KnownIssuesFile)+":") {
				t.Errorf("LoadKnownIssues(%q) = %q, want it to start with the file's path and line", tc.src, err)
			}
		})
	}
}
