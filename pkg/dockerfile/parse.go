package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// File is a parsed Dockerfile: its stages with their typed instructions, the
// global ARGs declared before the first FROM, and the escape token.
type File struct {
	// Name is how errors refer to the Dockerfile (its path, or "Dockerfile"
	// when it came from stdin).
	Name string
	// Stages are the FROM blocks in source order.
	Stages []instructions.Stage
	// MetaArgs are the ARG instructions before the first FROM.
	MetaArgs []instructions.ArgCommand
	// Escape is the escape character (`\` unless a parser directive says
	// otherwise).
	Escape rune
	// Warnings are non-fatal parser notes (empty continuation lines, …).
	Warnings []string
}

// Error is a problem in a Dockerfile, located at a line.
type Error struct {
	File string
	Line int // 1-based; 0 when the error has no position
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an error located at the first line of loc in the
// Dockerfile.
func (f *File) Errorf(loc []parser.Range, format string, args ...any) error {
	return &Error{File: f.Name, Line: firstLine(loc), Err: fmt.Errorf(format, args...)}
}

// Wrap locates err at loc unless it already carries a Dockerfile position.
func (f *File) Wrap(loc []parser.Range, err error) error {
	if err == nil {
		return nil
	}
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	return &Error{File: f.Name, Line: firstLine(loc), Err: err}
}

func firstLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

// Parse parses a Dockerfile. name is used in error messages. Every
// syntax error, unknown instruction (with a suggestion when one is close)
// and malformed flag is reported as an *Error with its line.
func Parse(name string, src []byte) (f *File, err error) {
	// BuildKit's parser is well tested but the input is untrusted: turn
	// any panic into an error rather than crashing the build.
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, &Error{File: name, Err: fmt.Errorf("cannot parse: %v", r)}
		}
	}()
	if err := checkLineLengths(name, src); err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, locate(name, err)
	}
	f = &File{Name: name, Escape: rune(res.EscapeToken)}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		f.Warnings = append(f.Warnings, fmt.Sprintf("%s:%d: %s", name, line, w.Short))
	}
	if res.AST == nil || len(res.AST.Children) == 0 {
		return nil, &Error{File: name, Err: errors.New("the Dockerfile has no instructions")}
	}
	for _, n := range res.AST.Children {
		v, err := instructions.ParseInstruction(n)
		if err != nil {
			return nil, locateAt(name, n.StartLine, err)
		}
		switch c := v.(type) {
		case *instructions.Stage:
			f.Stages = append(f.Stages, *c)
		case *instructions.ArgCommand:
			if len(f.Stages) == 0 {
				f.MetaArgs = append(f.MetaArgs, *c)
				continue
			}
			f.Stages[len(f.Stages)-1].AddCommand(c)
		case instructions.Command:
			if len(f.Stages) == 0 {
				return nil, &Error{File: name, Line: n.StartLine,
					Err: fmt.Errorf("%s before the first FROM: only ARG may come before FROM", strings.ToUpper(n.Value))}
			}
			f.Stages[len(f.Stages)-1].AddCommand(c)
		default:
			return nil, &Error{File: name, Line: n.StartLine, Err: fmt.Errorf("unsupported instruction %s", n.Value)}
		}
	}
	if len(f.Stages) == 0 {
		return nil, &Error{File: name, Err: errors.New("no FROM instruction")}
	}
	return f, nil
}

// Lexer returns a shell lexer with the file's escape token, for ARG and ENV
// expansion.
func (f *File) Lexer() *shell.Lex {
	esc := f.Escape
	if esc == 0 {
		esc = '\\'
	}
	return shell.NewLex(esc)
}

// locate turns a BuildKit error into an *Error carrying the line it names.
func locate(name string, err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 {
		return &Error{File: name, Line: firstLine(le.Locations[0]), Err: cleanErr(err)}
	}
	return &Error{File: name, Err: cleanErr(err)}
}

func locateAt(name string, line int, err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && firstLine(le.Locations[0]) > 0 {
		line = firstLine(le.Locations[0])
	}
	return &Error{File: name, Line: line, Err: cleanErr(err)}
}

// cleanErr drops BuildKit's "dockerfile parse error on line N:" prefix, which
// our own file:line prefix replaces.
func cleanErr(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "dockerfile parse error on line "); i == 0 {
		if j := strings.Index(msg, ": "); j > 0 {
			msg = msg[j+2:]
		}
	}
	return errors.New(msg)
}

// maxLineLength is the longest physical line BuildKit's parser reads (its
// line scanner's buffer); a longer one stops the scan and BuildKit reports
// an empty file.
const maxLineLength = 64<<10 - 1

// checkLineLengths refuses a Dockerfile with a line the parser cannot read,
// naming the line (a 100 KB FROM line would otherwise read as a file with
// no instructions).
func checkLineLengths(name string, src []byte) error {
	for line := 1; len(src) > 0; line++ {
		n := bytes.IndexByte(src, '\n')
		if n < 0 {
			n = len(src)
		}
		if n > maxLineLength {
			return &Error{File: name, Line: line, Err: fmt.Errorf("the line is %d bytes long, more than the %d a Dockerfile line may have", n, maxLineLength)}
		}
		src = src[min(n+1, len(src)):]
	}
	return nil
}
