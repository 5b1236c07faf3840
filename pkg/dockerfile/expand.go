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

// ExpandWords expands one instruction argument against env and splits it
// into words as a shell would (EXPOSE's `$ports` may stand for several).
func (f *File) ExpandWords(word string, env map[string]string) ([]string, error) {
	return f.Lexer().ProcessWords(word, mapEnv(env))
}

// ExpandArgName expands the name of an ARG declaration (`ARG ${name}=v`
// declares the ARG that ${name} names, as BuildKit does).
func (f *File) ExpandArgName(kv instructions.KeyValuePairOptional, env map[string]string) (instructions.KeyValuePairOptional, error) {
	key, err := expandWord(f.Lexer(), kv.Key, env)
	if err != nil {
		return kv, fmt.Errorf("ARG %s: %w", kv.Key, err)
	}
	if key == "" {
		return kv, fmt.Errorf("ARG %s: the name expands to an empty string", kv.Key)
	}
	kv.Key = key
	return kv, nil
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
