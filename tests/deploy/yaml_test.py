"""Structure of the deployment files: deploy/compose.yaml, deploy/k8s/*.yaml, Dockerfile.

Loads every YAML file under deploy/ (each document of multi-document files)
and checks what the deployment depends on: native gRPC probes on the gRPC
port, a grace period longer than the drain, resources, a headless Service
selecting the server pods, an HPA aimed at the Deployment, a compose file
whose load test waits for a healthy server.

    /usr/bin/python3 -m unittest tests/deploy/yaml_test.py     (from the repository root)

Needs Debian's python3-yaml.
"""

import pathlib
import re
import shlex
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GRPC_PORT = 50051
DEFAULT_DRAIN_SECONDS = 30  # attention_server --drain_seconds default


def yaml_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_objects():
    objects = []
    for path in yaml_files():
        if path.parent.name != "k8s" or path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            objects.append((path, doc))
    return objects


def of_kind(kind):
    return [doc for _, doc in k8s_objects() if doc.get("kind") == kind]


def flag_value(args, name):
    """The value of --name=V or --name V in a list of arguments (last wins), else None."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def duration_seconds(text):
    """Compose durations: '40s', '1m30s', '500ms', or a number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


class YamlFilesTest(unittest.TestCase):
    def test_every_file_loads(self):
        files = yaml_files()
        self.assertGreaterEqual(len(files), 4, files)
        for path in files:
            with self.subTest(file=str(path.relative_to(ROOT))):
                docs = load_all(path)
                self.assertTrue(docs, "no document")
                for doc in docs:
                    self.assertIsInstance(doc, dict)

    def test_k8s_objects_have_api_version_kind_and_name(self):
        for path, doc in k8s_objects():
            with self.subTest(file=path.name, kind=doc.get("kind")):
                self.assertIn("apiVersion", doc)
                self.assertIn("kind", doc)
                self.assertTrue(doc.get("metadata", {}).get("name"))

    def test_kustomization_lists_existing_files(self):
        kustomization = load_all(DEPLOY / "k8s" / "kustomization.yaml")[0]
        for resource in kustomization["resources"]:
            self.assertTrue((DEPLOY / "k8s" / resource).is_file(), resource)
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"):
            self.assertTrue(
                any(
                    doc.get("kind") == kind
                    for r in kustomization["resources"]
                    for doc in load_all(DEPLOY / "k8s" / r)
                ),
                f"kustomization.yaml applies no {kind}",
            )


class DeploymentTest(unittest.TestCase):
    def setUp(self):
        deployments = of_kind("Deployment")
        self.assertEqual(len(deployments), 1)
        self.deployment = deployments[0]
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]

    def test_selector_matches_pod_labels(self):
        selector = self.deployment["spec"]["selector"]["matchLabels"]
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selector.items() <= labels.items(), (selector, labels))

    def test_grpc_probes_on_the_grpc_port(self):
        for probe in ("livenessProbe", "readinessProbe"):
            with self.subTest(probe=probe):
                self.assertIn(probe, self.container)
                self.assertEqual(self.container[probe]["grpc"]["port"], GRPC_PORT)
        ports = [p["containerPort"] for p in self.container["ports"]]
        self.assertIn(GRPC_PORT, ports)

    def test_grace_period_outlasts_prestop_and_drain(self):
        args = [str(a) for a in self.container.get("args", [])]
        drain = int(flag_value(args, "drain_seconds") or DEFAULT_DRAIN_SECONDS)
        pre_stop = 0
        command = self.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if command and command[0].endswith("sleep"):
            pre_stop = int(command[1])
        grace = self.pod["terminationGracePeriodSeconds"]
        self.assertGreater(grace, drain + pre_stop, f"grace {grace} s, preStop {pre_stop} s, drain {drain} s")

    def test_resources_requests_and_limits(self):
        resources = self.container["resources"]
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                with self.subTest(section=section, resource=resource):
                    self.assertIn(resource, resources[section])

    def test_runs_as_non_root(self):
        context = self.pod.get("securityContext", {})
        self.assertTrue(context.get("runAsNonRoot"))
        self.assertNotEqual(context.get("runAsUser", 0), 0)

    def test_compute_threads_fit_the_cpu_limit(self):
        args = [str(a) for a in self.container.get("args", [])]
        workers = flag_value(args, "workers")
        threads = flag_value(args, "compute_threads")
        if workers is None or threads is None:
            self.skipTest("workers or compute_threads left to their defaults")
        limit = str(self.container["resources"]["limits"]["cpu"])
        cores = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        self.assertLessEqual(int(workers) * int(threads), cores)


class ServiceTest(unittest.TestCase):
    def test_headless_service_selects_the_server_pods(self):
        headless = [s for s in of_kind("Service") if s["spec"].get("clusterIP") == "None"]
        self.assertEqual(len(headless), 1, "one Service with clusterIP: None")
        service = headless[0]
        self.assertIn(GRPC_PORT, [p["port"] for p in service["spec"]["ports"]])
        labels = of_kind("Deployment")[0]["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(service["spec"]["selector"].items() <= labels.items())

    def test_pdb_selects_the_server_pods(self):
        labels = of_kind("Deployment")[0]["spec"]["template"]["metadata"]["labels"]
        for pdb in of_kind("PodDisruptionBudget"):
            self.assertTrue(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items())

    def test_loadtest_job_targets_the_headless_service(self):
        headless = [s for s in of_kind("Service") if s["spec"].get("clusterIP") == "None"]
        self.assertTrue(headless, "no Service with clusterIP: None")
        headless = headless[0]
        for job in of_kind("Job"):
            args = job["spec"]["template"]["spec"]["containers"][0]["args"]
            target = flag_value(args, "target")
            self.assertTrue(target.startswith(f"dns:///{headless['metadata']['name']}."), target)
            self.assertTrue(target.endswith(f":{GRPC_PORT}"), target)


class AutoscalerTest(unittest.TestCase):
    def test_hpa_scales_the_deployment_on_cpu(self):
        hpas = of_kind("HorizontalPodAutoscaler")
        self.assertEqual(len(hpas), 1)
        hpa = hpas[0]
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        target = hpa["spec"]["scaleTargetRef"]
        deployment = of_kind("Deployment")[0]
        self.assertEqual(target["kind"], "Deployment")
        self.assertEqual(target["name"], deployment["metadata"]["name"])
        self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        cpu = [m for m in hpa["spec"]["metrics"]
               if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
        self.assertEqual(len(cpu), 1)


class ComposeTest(unittest.TestCase):
    def setUp(self):
        self.services = load_all(DEPLOY / "compose.yaml")[0]["services"]
        servers = [name for name, s in self.services.items()
                   if "attention_loadtest" not in str(s.get("entrypoint", ""))]
        self.assertEqual(len(servers), 1, servers)
        self.server_name = servers[0]
        self.server = self.services[self.server_name]

    def test_server_has_a_health_check(self):
        test = self.server["healthcheck"]["test"]
        self.assertIn("attention-healthcheck", " ".join(test) if isinstance(test, list) else test)

    def test_server_stops_after_its_drain(self):
        flags = shlex.split(self.server.get("environment", {}).get("ATTN_SERVER_FLAGS", ""))
        drain = int(flag_value(flags, "drain_seconds") or DEFAULT_DRAIN_SECONDS)
        self.assertGreater(duration_seconds(self.server["stop_grace_period"]), drain)

    def test_loadtest_waits_for_a_healthy_server(self):
        loadtests = [s for s in self.services.values()
                     if "attention_loadtest" in str(s.get("entrypoint", ""))]
        self.assertEqual(len(loadtests), 1)
        loadtest = loadtests[0]
        self.assertEqual(loadtest["depends_on"][self.server_name]["condition"], "service_healthy")
        target = flag_value([str(a) for a in loadtest["command"]], "target")
        self.assertIn(f"{self.server_name}:{GRPC_PORT}", target)


class DockerfileTest(unittest.TestCase):
    def setUp(self):
        self.text = (ROOT / "Dockerfile").read_text(encoding="utf-8")

    def test_multi_stage_on_bookworm_slim(self):
        froms = re.findall(r"^FROM\s+(\S+)", self.text, re.M)
        self.assertEqual(froms, ["debian:bookworm-slim", "debian:bookworm-slim"])
        self.assertIn("scripts/install-deps.sh", self.text)

    def test_runtime_stage(self):
        runtime = self.text.split("\nFROM ")[-1]
        self.assertRegex(runtime, r"(?m)^EXPOSE 50051$")
        self.assertRegex(runtime, r"(?m)^HEALTHCHECK ")
        self.assertRegex(runtime, r"(?m)^USER [1-9]")
        self.assertRegex(runtime, r"(?m)^ENTRYPOINT ")
        self.assertIn("--no-install-recommends", runtime)
        self.assertIn("rm -rf /var/lib/apt/lists/*", runtime)
        self.assertIn("ATTN_LISTEN=0.0.0.0:50051", runtime)

    def test_scripts_it_copies_exist(self):
        for source in re.findall(r"^COPY (?:--chmod=\S+ )?(deploy/\S+)", self.text, re.M):
            self.assertTrue((ROOT / source).is_file(), source)


if __name__ == "__main__":
    unittest.main()
