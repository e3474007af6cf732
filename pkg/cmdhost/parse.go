package cmdhost

import (
	"fmt"
	"strings"
)

// Output says how a command's stdout becomes the call's JSON result.
type Output string

const (
	// OutputAuto (the default): stdout, trimmed of surrounding white
	// space, is the result if it is valid JSON, else the trimmed text as a
	// JSON string; empty output is null.
	OutputAuto Output = "auto"
	// OutputJSON: stdout must be valid JSON (else the call fails).
	OutputJSON Output = "json"
	// OutputText: stdout as a JSON string, trailing newlines removed.
	OutputText Output = "text"
	// OutputLines: stdout as a JSON array of its lines.
	OutputLines Output = "lines"
)

// Command is a parsed "cmd:" reference.
type Command struct {
	Argv   []string
	Output Output
}

// ParseCommand parses the part of a reference after "cmd:".
//
// Leading words that start with '@' are options: @auto, @json, @text,
// @lines choose the output mode. The rest is split into argv like a POSIX
// shell splits words, without any expansion: white space separates
// words; '…' quotes literally; "…" quotes with backslash escapes for
// \" \\ \$ and \`; a backslash outside quotes escapes the next character.
// Unquoted | & ; < > ( ) $ and ` are rejected: pipelines, redirections
// and variables need an explicit shell, as in cmd:sh -c 'tr a-z A-Z | wc -w'.
// Globs (* ? [) and ~ are not expanded.
func ParseCommand(ref string) (Command, error) {
	words, err := splitWords(ref)
	if err != nil {
		return Command{}, fmt.Errorf("cmd:%s: %w", ref, err)
	}
	c := Command{Output: OutputAuto}
	for len(words) > 0 && strings.HasPrefix(words[0], "@") {
		switch o := Output(strings.TrimPrefix(words[0], "@")); o {
		case OutputAuto, OutputJSON, OutputText, OutputLines:
			c.Output = o
		default:
			return Command{}, fmt.Errorf("cmd:%s: unknown option %q (want @auto, @json, @text or @lines)", ref, words[0])
		}
		words = words[1:]
	}
	if len(words) == 0 {
		return Command{}, fmt.Errorf("cmd:%s: no command", ref)
	}
	c.Argv = words
	return c, nil
}

func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	flush := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			flush()
		case r == '\'':
			in = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unterminated single quote at offset %d", i)
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j
		case r == '"':
			in = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) {
					switch rs[j+1] {
					case '"', '\\', '$', '`':
						j++
						cur.WriteRune(rs[j])
						continue
					case '\n':
						j++
						continue
					}
				}
				cur.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unterminated double quote at offset %d", i)
			}
			i = j
		case r == '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("trailing backslash")
			}
			i++
			if rs[i] != '\n' {
				in = true
				cur.WriteRune(rs[i])
			}
		case strings.ContainsRune("|&;<>()$`", r):
			return nil, fmt.Errorf("unquoted %q at offset %d: quote it, or run a shell (cmd:sh -c '…')", r, i)
		case r == 0:
			return nil, fmt.Errorf("NUL byte at offset %d", i)
		default:
			in = true
			cur.WriteRune(r)
		}
	}
	flush()
	return words, nil
}
