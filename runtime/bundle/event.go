package bundle

// ParseEvent parses one line of events.jsonl; ok is false when it is not
// a JSON object. Fields keep numbers as json.Number.
func ParseEvent(line []byte) (ev Event, ok bool) { return parseEvent(line) }
