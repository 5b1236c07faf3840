// Package confine is what every RUN step gets, whatever its isolation mode:
// docker's default capability set at most (DropCaps) and, with
// no_new_privs, a seccomp filter of docker's default profile's shape
// (Filter). Package sandbox applies both in its helper before it starts a
// step; package ptrace in its stub before it executes the traced command.
package confine
