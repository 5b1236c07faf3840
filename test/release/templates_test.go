package release

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kiln-build/kiln/internal/testutil"
)

func templatePath(t *testing.T, p string) string {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "templates", p)
}

func decodeStrict(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(templatePath(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// tektonTask is the part of Tekton's v1 Task the template uses; unknown
// fields fail the strict decoding as they would fail Tekton's validation.
type tektonTask struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Description string `json:"description"`
		Params      []struct {
			Name        string `json:"name"`
			Type        string `json:"type"`
			Default     any    `json:"default"`
			Description string `json:"description"`
		} `json:"params"`
		Workspaces []struct {
			Name        string `json:"name"`
			Optional    bool   `json:"optional"`
			Description string `json:"description"`
			MountPath   string `json:"mountPath"`
		} `json:"workspaces"`
		Results []struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		} `json:"results"`
		Steps   []corev1.Container `json:"steps"`
		Volumes []corev1.Volume    `json:"volumes"`
	} `json:"spec"`
}

// restricted checks a pod against Pod Security Standards "restricted".
func restricted(t *testing.T, name string, pod *corev1.PodSecurityContext, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	nonRoot := sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || pod != nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot
	seccomp := sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault ||
		pod != nil && pod.SeccompProfile != nil && pod.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	if !nonRoot || !seccomp || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("%s: container %s is not at Pod Security Standards restricted", name, c.Name)
	}
}

func homeOnEmptyDir(t *testing.T, name string, c corev1.Container, vols []corev1.Volume) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != "/home/kiln" {
			continue
		}
		for _, v := range vols {
			if v.Name == m.Name && v.EmptyDir != nil {
				return
			}
		}
	}
	t.Errorf("%s: container %s has no emptyDir at /home/kiln (kiln's store)", name, c.Name)
}

func TestTemplatesDecodeStrictly(t *testing.T) {
	var restrictedJob, baselineJob batchv1.Job
	decodeStrict(t, "kubernetes/job-restricted.yaml", &restrictedJob)
	decodeStrict(t, "kubernetes/job-baseline.yaml", &baselineJob)
	ps := restrictedJob.Spec.Template.Spec
	restricted(t, "job-restricted", ps.SecurityContext, ps.Containers[0])
	homeOnEmptyDir(t, "job-restricted", ps.Containers[0], ps.Volumes)
	bs := baselineJob.Spec.Template.Spec
	if sc := bs.Containers[0].SecurityContext; sc == nil || sc.Privileged != nil || sc.Capabilities != nil ||
		bs.SecurityContext.RunAsNonRoot == nil || !*bs.SecurityContext.RunAsNonRoot {
		t.Errorf("job-baseline: not a non-root pod at baseline")
	}
	homeOnEmptyDir(t, "job-baseline", bs.Containers[0], bs.Volumes)

	var pod corev1.Pod
	decodeStrict(t, "jenkins/kiln-pod.yaml", &pod)
	if len(pod.Spec.Containers) != 1 || !strings.Contains(pod.Spec.Containers[0].Image, "kiln:debug") {
		t.Errorf("jenkins pod: want one kiln debug container, got %+v", pod.Spec.Containers)
	}
	homeOnEmptyDir(t, "jenkins pod", pod.Spec.Containers[0], pod.Spec.Volumes)

	var sa corev1.ServiceAccount
	decodeStrict(t, "eks/service-account.yaml", &sa)
	if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Errorf("eks service account without the IRSA annotation")
	}

	var task tektonTask
	decodeStrict(t, "tekton/kiln-build.yaml", &task)
	if task.APIVersion != "tekton.dev/v1" || task.Kind != "Task" || len(task.Spec.Steps) != 1 {
		t.Fatalf("tekton task: %s %s with %d steps", task.APIVersion, task.Kind, len(task.Spec.Steps))
	}
	restricted(t, "tekton task", nil, task.Spec.Steps[0])
	homeOnEmptyDir(t, "tekton task", task.Spec.Steps[0], task.Spec.Volumes)

	for _, p := range []string{"eks/ecr-push-policy.json", "eks/cache-lifecycle-policy.json"} {
		b, err := os.ReadFile(templatePath(t, p))
		var v map[string]any
		if err != nil || json.Unmarshal(b, &v) != nil || len(v) == 0 {
			t.Errorf("%s: not a JSON object: %v", p, err)
		}
	}
}

// runTemplate runs a script (or a container command) in kiln's image as
// the template's pod would: as user (UID:GID), the default seccomp
// profile, an emptyDir-like tmpfs at /home/kiln that the user owns (as
// fsGroup makes it), the project mounted at dir.
func runTemplate(t *testing.T, image, user, project, dir string, env map[string]string, extra []string, cmd ...string) string {
	t.Helper()
	d := testutil.SharedDocker(t)
	uid, gid, _ := strings.Cut(user, ":")
	args := []string{"--network=host", "--user=" + user, "--tmpfs=/home/kiln:uid=" + uid + ",gid=" + gid + ",mode=0755,exec",
		"-v=" + project + ":" + dir, "-w=" + dir}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-e="+k+"="+env[k])
	}
	args = append(append(args, extra...), image)
	return d.Run(t, append(args, cmd...)...)
}

func newProject(t *testing.T, reg, dockerfile string) string {
	t.Helper()
	p := t.TempDir()
	os.MkdirAll(filepath.Join(p, "docker"), 0o755)
	os.WriteFile(filepath.Join(p, dockerfile), []byte("FROM "+reg+"/busybox:latest\nARG PIPELINE_ID_ARG\nLABEL pipeline=$PIPELINE_ID_ARG\nCOPY app.txt /app/\n"), 0o644)
	os.WriteFile(filepath.Join(p, "app.txt"), []byte("app\n"), 0o644)
	os.Chmod(p, 0o777) // the job writes its artifacts there as uid 1000
	return p
}

func TestGitLabTemplateRuns(t *testing.T) {
	reg := buildImages(t)
	testutil.PushImage(t, reg+"/busybox:latest", testutil.BusyboxImage(t))
	var ci map[string]json.RawMessage
	b, err := os.ReadFile(templatePath(t, "gitlab/.gitlab-ci.yml"))
	if err == nil {
		err = yaml.Unmarshal(b, &ci)
	}
	if err != nil {
		t.Fatalf(".gitlab-ci.yml: %v", err)
	}
	var vars map[string]string
	if err := json.Unmarshal(ci["variables"], &vars); err != nil {
		t.Fatalf(".gitlab-ci.yml variables: %v", err)
	}
	for _, u := range ciUsers {
		t.Run(u.name, func(t *testing.T) {
			project := "project-" + strings.Split(u.user, ":")[0]
			env := map[string]string{
				"CI_REGISTRY": reg, "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": "job-token",
				"CI_REGISTRY_IMAGE": reg + "/group/" + project, "CI_PIPELINE_ID": "4242", "CI_COMMIT_SHORT_SHA": "abc1234",
				"CI_COMMIT_REF_SLUG": "main", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main",
			}
			for k, v := range vars {
				env[k] = os.Expand(v, func(n string) string { return env[n] })
			}
			dir := newProject(t, reg, "docker/Dockerfile-build")
			for _, job := range []string{"build", "promote"} {
				var j struct {
					Script []string `json:"script"`
				}
				if err := json.Unmarshal(ci[job], &j); err != nil || len(j.Script) == 0 {
					t.Fatalf("job %s has no script: %v", job, err)
				}
				script := "set -e\n" + strings.Join(j.Script, "\n")
				runTemplate(t, reg+"/kiln:test-debug", u.user, dir, "/builds/group/"+project, env, nil, "sh", "-c", script)
			}
			digest, err := os.ReadFile(filepath.Join(dir, "image-digest.txt"))
			if err != nil {
				t.Fatal(err)
			}
			for _, tag := range []string{"abc1234", "main", "latest"} {
				if got := remoteDigest(t, reg+"/group/"+project+"/app:"+tag); got != string(digest) {
					t.Errorf("app:%s is %s, the job's digest %s", tag, got, digest)
				}
			}
		})
	}
}

func TestJenkinsTemplateRuns(t *testing.T) {
	reg := buildImages(t)
	testutil.PushImage(t, reg+"/busybox:latest", testutil.BusyboxImage(t))
	b, err := os.ReadFile(templatePath(t, "jenkins/Jenkinsfile"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s)sh '''(.*?)'''`).FindAllStringSubmatch(string(b), -1)
	if len(blocks) != 2 {
		t.Fatalf("Jenkinsfile: %d sh blocks, want build and promote", len(blocks))
	}
	for _, u := range ciUsers {
		t.Run(u.name, func(t *testing.T) {
			image := reg + "/team/app-" + strings.Split(u.user, ":")[0]
			env := map[string]string{"REGISTRY": reg, "IMAGE": image, "REGISTRY_USER": "jenkins", "REGISTRY_PASSWORD": "secret",
				"BUILD_NUMBER": "17", "BRANCH_NAME": "main", "DOCKER_CONFIG": "/home/kiln/.docker"}
			project := newProject(t, reg, "Dockerfile")
			for _, blk := range blocks {
				runTemplate(t, reg+"/kiln:test-debug", u.user, project, "/home/jenkins/agent/workspace/app", env, nil, "sh", "-c", "set -e\n"+blk[1])
			}
			if a, b := remoteDigest(t, image+":17"), remoteDigest(t, image+":latest"); a == "" || a != b || remoteDigest(t, image+":main") != a {
				t.Errorf("%s:17 %s, :latest %s", image, a, b)
			}
		})
	}
}

// The restricted Job's container, as its manifest says, at restricted:
// every capability dropped, no privilege escalation, a read-only root; as
// uid 1000 (its runAsUser) and as root (the same command where a
// namespace lets pods run as root).
func TestKubernetesJobRuns(t *testing.T) {
	reg := buildImages(t)
	testutil.PushImage(t, reg+"/busybox:latest", testutil.BusyboxImage(t))
	var job batchv1.Job
	decodeStrict(t, "kubernetes/job-restricted.yaml", &job)
	c := job.Spec.Template.Spec.Containers[0]
	if sc := job.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1000 {
		t.Fatalf("job-restricted: runAsUser is not 1000")
	}
	for _, u := range ciUsers {
		t.Run(u.name, func(t *testing.T) {
			app := reg + "/team/app-" + strings.Split(u.user, ":")[0]
			args := make([]string, len(c.Args))
			for i, a := range c.Args {
				args[i] = strings.ReplaceAll(strings.ReplaceAll(a, "registry.example.com/team/app", app), "registry.example.com", reg)
			}
			project := newProject(t, reg, "Dockerfile")
			auth := t.TempDir()
			os.WriteFile(filepath.Join(auth, "config.json"), []byte(`{"auths":{}}`), 0o644)
			os.Chmod(auth, 0o755)
			extra := []string{"--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "-v=" + auth + ":/kiln-auth:ro"}
			out := runTemplate(t, reg+"/kiln:test", u.user, project, "/workspace", map[string]string{"DOCKER_CONFIG": "/kiln-auth"}, extra, args...)
			if !strings.Contains(out, "sha256:") || remoteDigest(t, app+":1.0.0") == "" {
				t.Errorf("the restricted Job did not push %s:1.0.0: %q", app, out)
			}
		})
	}
}
