package bundle

import (
	"encoding/xml"
	"fmt"
)

// The JUnit XML subset GitLab and Jenkins read: testsuites > testsuite >
// testcase, with <failure>, <error> or <skipped> children.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
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
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// JUnit renders r as JUnit XML. Test cases are grouped by stage; a job that
// ended in an error adds an <error> case naming its class and message, so CI
// shows broken labs distinctly from failed tests.
func JUnit(r Result) ([]byte, error) {
	secs := func(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }
	suites := junitSuites{Name: r.Job, Time: secs(r.DurationMS)}
	byStage := map[string]int{}
	suite := func(stage string) *junitSuite {
		if i, ok := byStage[stage]; ok {
			return &suites.Suites[i]
		}
		name := r.Job
		if stage != "" {
			name = r.Job + "." + stage
		}
		suites.Suites = append(suites.Suites, junitSuite{Name: name, Timestamp: r.Started.Format("2006-01-02T15:04:05")})
		byStage[stage] = len(suites.Suites) - 1
		return &suites.Suites[len(suites.Suites)-1]
	}
	for _, st := range r.Stages {
		suite(st.Name).Time = secs(st.DurationMS)
	}
	for _, tc := range r.Tests {
		s := suite(tc.Stage)
		c := junitCase{Name: tc.Name, Classname: s.Name, Time: "0"}
		if tc.Measurement != nil {
			c.SystemOut = fmt.Sprintf("measurement: %g %s", *tc.Measurement, tc.Units)
		}
		switch tc.Result {
		case "fail":
			c.Failure = &junitMessage{Message: tc.Name + " failed", Type: "fail"}
			s.Failures++
			suites.Failures++
		case "skip":
			c.Skipped = &junitMessage{Message: "skipped"}
			s.Skipped++
		case "unknown":
			c.Error = &junitMessage{Message: "result unknown", Type: "unknown"}
			s.Errors++
			suites.Errors++
		}
		s.Tests++
		suites.Tests++
		s.Cases = append(s.Cases, c)
	}
	if r.Error != nil {
		s := suite(r.Error.Stage)
		s.Cases = append(s.Cases, junitCase{
			Name: "job", Classname: s.Name, Time: "0",
			Error: &junitMessage{Message: r.Error.Message, Type: r.Error.Class, Text: r.Error.Pos + "\n" + r.Error.Backtrace},
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
