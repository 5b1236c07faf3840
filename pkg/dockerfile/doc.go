// Package dockerfile parses Dockerfiles with BuildKit's parser and
// instruction packages, keeps the source position of every instruction for
// error messages, expands ARG and ENV with BuildKit's shell lexer, builds the
// stage graph (which stages a target needs, in which order) and loads
// .dockerignore files.
package dockerfile
