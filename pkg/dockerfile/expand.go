package dockerfile

import (
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// Expander returns the single-word expander BuildKit's instructions use
// (their Expand methods), resolving $VAR and ${VAR…} forms against env.
func (f *File) Expander(env map[string]string) instructions.SingleWordExpander {
	lex := f.Lexer()
	return func(word string) (string, error) {
		return expandWord(lex, word, env)
	}
}

// ExpandWord expands one word against env.
func (f *File) ExpandWord(word string, env map[string]string) (string, error) {
	return expandWord(f.Lexer(), word, env)
}

// ArgValue gives the value an ARG declaration takes given the build args
// and the environment its default is expanded in; ok is false when it has
// none.
func (f *File) ArgValue(kv instructions.KeyValuePairOptional, buildArgs, env map[string]string) (string, bool, error) {
	return argValue(f.Lexer(), kv, buildArgs, env)
}

// ParseTriggers parses a base image's ONBUILD triggers into instructions.
// name is the Dockerfile's name, for errors.
func ParseTriggers(name string, triggers []string) ([]instructions.Command, error) {
	src := "FROM scratch\n" + strings.Join(triggers, "\n") + "\n"
	f, err := Parse(name+" (ONBUILD triggers)", []byte(src))
	if err != nil {
		return nil, err
	}
	if len(f.Stages) != 1 {
		return nil, fmt.Errorf("an ONBUILD trigger may not contain FROM")
	}
	return f.Stages[0].Commands, nil
}
