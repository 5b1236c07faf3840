package build

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// doConfig runs the instructions that change only the image's config
// (and its history): ENV, LABEL, MAINTAINER, EXPOSE, USER, CMD,
// ENTRYPOINT, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL and ONBUILD. ok is
// false for any other instruction.
func (s *stageState) doConfig(c instructions.Command, loc []parser.Range) (ok bool, err error) {
	switch c := c.(type) {
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			s.setEnv(kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		s.history("ENV "+strings.Join(parts, " "), true)
	case *instructions.LabelCommand:
		if s.cfg.Config.Labels == nil {
			s.cfg.Config.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range c.Labels {
			s.cfg.Config.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		s.history("LABEL "+strings.Join(parts, " "), true)
	case *instructions.MaintainerCommand:
		s.cfg.Author = c.Maintainer
		s.history("MAINTAINER "+c.Maintainer, true)
	case *instructions.ExposeCommand:
		ports, err := s.exposedPorts(c)
		if err != nil {
			return true, s.file.Errorf(loc, "EXPOSE: %v", err)
		}
		if s.cfg.Config.ExposedPorts == nil {
			s.cfg.Config.ExposedPorts = map[string]struct{}{}
		}
		set := map[string]struct{}{}
		for _, p := range ports {
			s.cfg.Config.ExposedPorts[p] = struct{}{}
			set[p] = struct{}{}
		}
		// BuildKit's (docker 20.10's) wording: the port set as Go prints it.
		s.history(fmt.Sprintf("EXPOSE %v", set), true)
	case *instructions.UserCommand:
		s.cfg.Config.User = c.User
		s.users = nil
		s.history("USER "+c.User, true)
	case *instructions.CmdCommand:
		s.cfg.Config.Cmd = s.commandLine(c.ShellDependantCmdLine)
		s.cfg.Config.ArgsEscaped = true // as BuildKit, for Windows-era clients
		s.cmdSet = true
		s.history(fmt.Sprintf("CMD %q", s.cfg.Config.Cmd), true)
	case *instructions.EntrypointCommand:
		s.cfg.Config.Entrypoint = s.commandLine(c.ShellDependantCmdLine)
		if !s.cmdSet {
			// An ENTRYPOINT resets a CMD inherited from the base image.
			s.cfg.Config.Cmd = nil
		}
		s.history(fmt.Sprintf("ENTRYPOINT %q", s.cfg.Config.Entrypoint), true)
	case *instructions.VolumeCommand:
		if s.cfg.Config.Volumes == nil {
			s.cfg.Config.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if strings.TrimSpace(v) == "" {
				return true, s.file.Errorf(loc, "VOLUME specified can not be an empty string")
			}
			s.cfg.Config.Volumes[v] = struct{}{}
		}
		s.history(fmt.Sprintf("VOLUME %v", c.Volumes), true)
	case *instructions.StopSignalCommand:
		if err := validSignal(c.Signal); err != nil {
			return true, s.file.Errorf(loc, "STOPSIGNAL: %v", err)
		}
		s.cfg.Config.StopSignal = c.Signal
		s.history("STOPSIGNAL "+c.Signal, true)
	case *instructions.HealthCheckCommand:
		h := c.Health
		s.cfg.Config.Healthcheck = &v1.HealthConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
		s.history("HEALTHCHECK "+healthcheckText(s.cfg.Config.Healthcheck), true)
	case *instructions.ShellCommand:
		s.cfg.Config.Shell = append([]string(nil), c.Shell...)
		s.history(fmt.Sprintf("SHELL %v", c.Shell), true)
	case *instructions.OnbuildCommand:
		// Recorded in the config only: BuildKit writes no history entry.
		s.cfg.Config.OnBuild = append(s.cfg.Config.OnBuild, c.Expression)
	default:
		return false, nil
	}
	return true, nil
}
