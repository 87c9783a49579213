package bundle

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// The JUnit XML subset GitLab and Jenkins read: testsuites > testsuite >
// testcase, with <failure>, <error> or <skipped> children.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut *junitOutput  `xml:"system-out,omitempty"`
}

// junitOutput is CDATA so that console lines stay lines when read raw.
type junitOutput struct {
	Text string `xml:",cdata"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// ConsoleFunc returns up to max bytes of the console log that end at byte
// offset off.
type ConsoleFunc func(off int64, max int) []byte

// The console excerpt of a failed case: its last lines before the case was
// recorded, enough to see why without making junit.xml a second console.log.
const (
	excerptBytes = 8 << 10
	excerptLines = 40
	excerptWidth = 240
)

// JUnit renders r as JUnit XML, in the shape GitLab and Jenkins read:
// testsuites > testsuite (one per stage) > testcase with name, classname
// and time, and a <failure message="...">text</failure>, <error> or
// <skipped> child. Only the cases that stand are in it (Standing: a retried
// stage's last attempt). A failed case's system-out holds the console
// before it (console may be nil). A stage that never ran is a skipped case;
// a job that ended in an error adds an <error> case naming its class and
// message, so CI shows broken labs distinctly from failed tests.
func JUnit(r Result, console ConsoleFunc) ([]byte, error) {
	secs := func(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }
	suites := junitSuites{Name: r.Job, Time: secs(r.DurationMS)}
	byStage := map[[2]string]int{}
	// A multi-device job's cases of a role are a suite of their own in
	// their stage's (JOB.STAGE.ROLE), so CI groups them by role.
	suiteOf := func(stage, role string) *junitSuite {
		if i, ok := byStage[[2]string{stage, role}]; ok {
			return &suites.Suites[i]
		}
		name := r.Job
		if stage != "" {
			name = r.Job + "." + stage
		}
		if role != "" {
			name += "." + role
		}
		suites.Suites = append(suites.Suites, junitSuite{Name: name, Timestamp: r.Started.Format("2006-01-02T15:04:05")})
		byStage[[2]string{stage, role}] = len(suites.Suites) - 1
		return &suites.Suites[len(suites.Suites)-1]
	}
	suite := func(stage string) *junitSuite { return suiteOf(stage, "") }
	for _, st := range r.Stages {
		s := suite(st.Name)
		s.Time = secs(st.DurationMS)
		if st.Status == "skipped" {
			s.Cases = append(s.Cases, junitCase{Name: st.Name, Classname: s.Name, Time: "0",
				Skipped: &junitMessage{Message: "stage " + st.Name + " did not run: an earlier stage ended the job"}})
			s.Tests++
			s.Skipped++
			suites.Tests++
			suites.Skipped++
		}
	}
	// A failure that matches known issues says so first, so CI shows
	// "known issue LAB-12" rather than a bare failure.
	known := func(failure, msg, text string) (string, string) {
		var ids, lines []string
		for _, k := range r.Triage {
			if k.Failure != failure {
				continue
			}
			ids = append(ids, "known issue "+k.ID)
			lines = append(lines, strings.TrimSpace(strings.Join([]string{"known issue " + k.ID + ":", k.Title, k.URL}, " ")))
		}
		if len(ids) == 0 {
			return msg, text
		}
		return "[" + strings.Join(ids, ", ") + "] " + msg, strings.Join(lines, "\n") + "\n" + text
	}
	// GitLab keys a test by its suite and name: a case recorded twice in a
	// stage would collapse into one, so repeats are numbered.
	seen := map[[2]string]int{}
	for _, tc := range Standing(r) {
		s := suiteOf(tc.Stage, tc.Role)
		name := tc.Name
		if tc.Role != "" {
			name = tc.Role + "." + tc.Name // client.fetch-from-server
		}
		key := [2]string{s.Name, name}
		if seen[key]++; seen[key] > 1 {
			name = fmt.Sprintf("%s (%d)", name, seen[key])
		}
		c := junitCase{Name: name, Classname: s.Name, Time: secs(tc.DurationMS)}
		var out []string
		if tc.Measurement != nil {
			out = append(out, fmt.Sprintf("measurement: %g %s", *tc.Measurement, tc.Units))
		}
		switch tc.Result {
		case "fail":
			msg := tc.Message
			if msg == "" {
				msg = tc.Name + " failed"
			}
			msg, text := known("test "+tc.Name, msg, tc.Message)
			c.Failure = &junitMessage{Message: msg, Type: "fail", Text: text}
			s.Failures++
			suites.Failures++
			if console != nil {
				data := console(tc.ConsoleOffset, excerptBytes)
				lines := TailLines(data, excerptLines, excerptWidth, int64(len(data)) < tc.ConsoleOffset)
				if len(lines) > 0 {
					out = append(out, fmt.Sprintf("console before the failure (last %d lines of console.log):", len(lines)))
					out = append(out, lines...)
				}
			}
		case "skip":
			msg := tc.Message
			if msg == "" {
				msg = "skipped"
			}
			c.Skipped = &junitMessage{Message: msg}
			s.Skipped++
			suites.Skipped++
		case "unknown":
			msg := tc.Message
			if msg == "" {
				msg = "result unknown"
			}
			c.Error = &junitMessage{Message: msg, Type: "unknown"}
			s.Errors++
			suites.Errors++
		}
		if len(out) > 0 {
			c.SystemOut = &junitOutput{Text: strings.Join(out, "\n") + "\n"}
		}
		s.Tests++
		suites.Tests++
		s.Cases = append(s.Cases, c)
	}
	if r.Error != nil {
		s := suite(r.Error.Stage)
		msg, text := known("error", r.Error.Message, r.Error.Pos+"\n"+r.Error.Backtrace)
		s.Cases = append(s.Cases, junitCase{
			Name: "job", Classname: s.Name, Time: "0",
			Error: &junitMessage{Message: msg, Type: r.Error.Class, Text: text},
		})
		s.Tests++
		s.Errors++
		suites.Tests++
		suites.Errors++
	}
	out, err := xml.MarshalIndent(suites, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}
