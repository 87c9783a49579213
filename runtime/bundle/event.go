package bundle

import (
	"bufio"
	"io"
)

// ParseEvent parses one line of events.jsonl; ok is false when it is not
// a JSON object. Fields keep numbers as json.Number.
func ParseEvent(line []byte) (ev Event, ok bool) { return parseEvent(line) }

// ScanEvents reads events.jsonl from r and calls fn with each non-empty
// line's number and event; ok is false for a line that is not a JSON
// object, and cut tells that such a line is the last, without its newline
// (the file was cut short). It stops at the first read error.
func ScanEvents(r io.Reader, fn func(n int, ev Event, ok, cut bool)) {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			ev, ok := parseEvent(line)
			fn(n, ev, ok, !ok && err == io.EOF)
		}
		if err != nil {
			return
		}
	}
}
