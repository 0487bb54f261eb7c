#!/usr/bin/env python3
"""kubelet-lite: starts the DaemonSet pod that `helm template` rendered,
through containerd's CRI, the way kubelet would on one node.

Used by shoal's Kubernetes test (crates/cli/tests/kubernetes.rs), where no
API server or kubelet can run. It does what kubelet does for this one pod
and nothing more: reads the DaemonSet's pod spec, resolves its env
(values, `fieldRef` to spec.nodeName and status.hostIP, `$(VAR)`
references), materialises its ConfigMap and Secret volumes from the same
rendering, binds its hostPath volumes, then calls the CRI's
RunPodSandbox, CreateContainer and StartContainer with the spec's image,
args, mounts, security context and resources, and polls the readiness
probe. `pull` is kubelet's PullImage. Each command prints one JSON line.

Not kubelet: no API server, no admission, no scheduling, no restarts on
failure, no probes after readiness, no image GC, no cluster DNS (the pod
gets the host's resolv.conf). Fields that only the API server or the
scheduler act on (tolerations, priority, affinity, the service account's
name) are accepted and have no effect here, as on a real kubelet; any
other field it does not handle is refused, rather than ignored.
"""

import argparse
import base64
import json
import os
import re
import sys
import time
import urllib.request

import grpc
import yaml
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc as cri_grpc


def stubs(socket):
    channel = grpc.insecure_channel("unix://" + socket)
    return cri_grpc.RuntimeServiceStub(channel), cri_grpc.ImageServiceStub(channel)


def load(manifests):
    with open(manifests) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def daemonset(objects):
    sets = [o for (kind, _), o in objects.items() if kind == "DaemonSet"]
    if len(sets) != 1:
        sys.exit(f"expected one DaemonSet in the rendering, found {len(sets)}")
    return sets[0]


def quantity_bytes(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m or (m.group(2) and m.group(2) not in units):
        sys.exit(f"unsupported quantity {q!r}")
    return int(float(m.group(1)) * units.get(m.group(2), 1))


def cpu_millis(q):
    q = str(q)
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def expand(value, env):
    # Kubernetes' $(VAR) expansion: defined variables only, $$ escapes.
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def resolve_env(container, node, host_ip):
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
            continue
        ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        fields = {"spec.nodeName": node, "status.hostIP": host_ip, "status.podIP": host_ip}
        if ref not in fields:
            sys.exit(f"env {e['name']}: unsupported source {e.get('valueFrom')}")
        env[e["name"]] = fields[ref]
    return env


def materialise(volume, objects, namespace, state):
    """The host path that backs a volume."""
    if "hostPath" in volume:
        hp = volume["hostPath"]
        if hp.get("type") == "DirectoryOrCreate":
            os.makedirs(hp["path"], mode=0o755, exist_ok=True)
        elif hp.get("type") not in (None, "", "Directory"):
            sys.exit(f"volume {volume['name']}: hostPath type {hp.get('type')} unsupported")
        return hp["path"]
    if "configMap" in volume:
        obj = objects.get(("ConfigMap", volume["configMap"]["name"]))
        files = {k: v.encode() for k, v in (obj or {}).get("data", {}).items()}
    elif "secret" in volume:
        obj = objects.get(("Secret", volume["secret"]["secretName"]))
        files = {k: base64.b64decode(v) for k, v in (obj or {}).get("data", {}).items()}
    else:
        sys.exit(f"volume {volume['name']}: unsupported kind {sorted(volume)}")
    if obj is None:
        sys.exit(f"volume {volume['name']}: its object is not in the rendering")
    if obj["metadata"].get("namespace", namespace) != namespace:
        sys.exit(f"volume {volume['name']}: object in another namespace")
    path = os.path.join(state, "volumes", volume["name"])
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    mode = (volume.get("secret") or volume.get("configMap") or {}).get("defaultMode", 0o644)
    for name in files:
        os.chmod(os.path.join(path, name), mode)
    return path


SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

# Pod spec fields: those used here, and those kubelet itself does not act
# on (scheduling, admission, the API server).
POD_KEYS = {"containers", "volumes", "hostNetwork", "dnsPolicy", "automountServiceAccountToken",
            "terminationGracePeriodSeconds", "serviceAccountName", "priorityClassName", "tolerations",
            "nodeSelector", "affinity", "imagePullSecrets"}
CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports", "startupProbe",
                  "readinessProbe", "livenessProbe", "resources", "securityContext", "volumeMounts"}
SECURITY_KEYS = {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
                 "allowPrivilegeEscalation", "capabilities", "seccompProfile", "privileged"}


def refuse_unknown(what, obj, known):
    unknown = set(obj) - known
    if unknown:
        sys.exit(f"kubelet-lite does not handle {what} fields {sorted(unknown)}")


def dns_config(spec, namespace, cluster_dns):
    """What kubelet gives a host-network pod for its dnsPolicy."""
    policy = spec.get("dnsPolicy", "ClusterFirst")
    if policy == "ClusterFirstWithHostNet":
        if not cluster_dns:
            sys.exit("dnsPolicy ClusterFirstWithHostNet: give --cluster-dns")
        return cri.DNSConfig(servers=[cluster_dns],
                             searches=[f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                             options=["ndots:5"])
    if policy in ("ClusterFirst", "Default"):
        return None  # a host-network pod keeps the node's resolv.conf
    sys.exit(f"dnsPolicy {policy} is not handled")


def pod_configs(ds, objects, node, host_ip, state, api_server, service_account, cluster_dns):
    spec = ds["spec"]["template"]["spec"]
    meta = ds["metadata"]
    if not spec.get("hostNetwork"):
        sys.exit("kubelet-lite runs host-network pods only")
    if spec.get("initContainers"):
        sys.exit("kubelet-lite does not run init containers")
    if len(spec["containers"]) != 1:
        sys.exit("kubelet-lite runs pods of one container")
    c = spec["containers"][0]
    namespace = meta.get("namespace", "default")
    refuse_unknown("pod spec", spec, POD_KEYS)
    refuse_unknown("container", c, CONTAINER_KEYS)
    refuse_unknown("securityContext", c.get("securityContext", {}), SECURITY_KEYS)
    ns_opts = cri.NamespaceOption(network=cri.NODE, pid=cri.CONTAINER, ipc=cri.POD)
    sandbox = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=f"{meta['name']}-{node}", uid=f"uid-{meta['name']}-{node}",
                                        namespace=namespace, attempt=0),
        log_directory=os.path.join(state, "logs"),
        dns_config=dns_config(spec, namespace, cluster_dns),
        labels={**ds["spec"]["template"]["metadata"].get("labels", {})},
        linux=cri.LinuxPodSandboxConfig(security_context=cri.LinuxSandboxSecurityContext(namespace_options=ns_opts)),
    )
    os.makedirs(os.path.join(state, "logs"), exist_ok=True)
    volumes = {v["name"]: materialise(v, objects, namespace, state) for v in spec.get("volumes", [])}
    mounts = [cri.Mount(container_path=m["mountPath"], host_path=volumes[m["name"]],
                        readonly=bool(m.get("readOnly"))) for m in c.get("volumeMounts", [])]
    # kubelet mounts nested paths after their parents.
    mounts.sort(key=lambda m: m.container_path.count("/"))
    env = resolve_env(c, node, host_ip)
    if api_server:
        # kubelet tells every pod where the API server is...
        host, _, port = api_server.rpartition(":")
        env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, **env}
    if spec.get("automountServiceAccountToken", True):
        # ...and mounts the service account's token, CA and namespace.
        if not (api_server and service_account):
            sys.exit("the pod mounts its service account: give --api-server and --service-account")
        mounts.append(cri.Mount(container_path=SA_PATH, host_path=service_account, readonly=True))
    sc = c.get("securityContext", {})
    run_as = sc.get("runAsUser")
    if sc.get("privileged"):
        sys.exit("kubelet-lite does not run privileged containers")
    if sc.get("runAsNonRoot") and run_as in (None, 0):
        sys.exit("runAsNonRoot with user 0 (or the image's user): kubelet would refuse to start it")
    seccomp = sc.get("seccompProfile", {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Unconfined"):
        sys.exit(f"seccompProfile {seccomp} is not handled")
    security = cri.LinuxContainerSecurityContext(
        namespace_options=ns_opts,
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        capabilities=cri.Capability(drop_capabilities=sc.get("capabilities", {}).get("drop", []),
                                    add_capabilities=sc.get("capabilities", {}).get("add", [])),
    )
    if seccomp:
        kind = cri.SecurityProfile.RuntimeDefault if seccomp == "RuntimeDefault" else cri.SecurityProfile.Unconfined
        security.seccomp.CopyFrom(cri.SecurityProfile(profile_type=kind))
    if run_as is not None:
        security.run_as_user.value = int(run_as)
    if sc.get("runAsGroup") is not None:
        security.run_as_group.value = int(sc["runAsGroup"])
    res = c.get("resources", {})
    resources = cri.LinuxContainerResources(
        memory_limit_in_bytes=quantity_bytes(res.get("limits", {}).get("memory", 0)),
        cpu_shares=max(2, cpu_millis(res.get("requests", {}).get("cpu", "2m")) * 1024 // 1000),
    )
    container = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=c["name"], attempt=0),
        image=cri.ImageSpec(image=c["image"]),
        command=[expand(a, env) for a in c.get("command", [])],
        args=[expand(a, env) for a in c.get("args", [])],
        envs=[cri.KeyValue(key=k, value=v) for k, v in env.items()],
        mounts=mounts,
        log_path=f"{c['name']}.log",
        linux=cri.LinuxContainerConfig(resources=resources, security_context=security),
    )
    probe = c.get("readinessProbe", {}).get("httpGet")
    return sandbox, container, probe, spec.get("terminationGracePeriodSeconds", 30), c.get("imagePullPolicy")


def wait_ready(probe, host_ip, limit, exited, start):
    url = f"http://{host_ip}:{probe['port']}{probe.get('path', '/')}"
    while time.monotonic() - start < limit:
        why = exited()
        if why:
            sys.exit(f"the container exited before it was ready: {why}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if 200 <= r.status < 400:
                    return time.monotonic() - start, r.read().decode(errors="replace")
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"readiness probe {url} did not pass within {limit} s")


def start_container(runtime, sandbox_id, sandbox, container, probe, host_ip, limit):
    cid = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sandbox_id, config=container, sandbox_config=sandbox)).container_id
    start = time.monotonic()
    runtime.StartContainer(cri.StartContainerRequest(container_id=cid))

    def exited():
        st = runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status
        if st.state != cri.CONTAINER_EXITED:
            return None
        try:
            with open(st.log_path, errors="replace") as f:
                tail = f.read()[-2000:]
        except OSError:
            tail = "(no log)"
        return f"exit code {st.exit_code}; log:\n{tail}"

    ready, body = wait_ready(probe, host_ip, limit, exited, start)
    return {"container": cid, "ready_seconds": round(ready, 3), "readyz": body}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True, help="containerd's CRI socket")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start the DaemonSet's pod on this node")
    run.add_argument("--manifests", required=True)
    run.add_argument("--node", required=True)
    run.add_argument("--host-ip", default="127.0.0.1")
    run.add_argument("--state", required=True, help="kubelet's directory for this pod")
    run.add_argument("--ready-within", type=float, default=60)
    restart = sub.add_parser("restart", help="stop the pod's container and start a new one in its sandbox")
    for a in ("--manifests", "--node", "--state", "--sandbox", "--container"):
        restart.add_argument(a, required=True)
    for cmd in (run, restart):
        cmd.add_argument("--api-server", help="HOST:PORT of the API server the pod is told about")
        cmd.add_argument("--service-account", help="a directory with token, ca.crt and namespace")
        cmd.add_argument("--cluster-dns", help="the cluster DNS server's IP, for dnsPolicy ClusterFirst*")
    restart.add_argument("--host-ip", default="127.0.0.1")
    restart.add_argument("--ready-within", type=float, default=60)
    stop = sub.add_parser("stop", help="stop and remove the pod")
    stop.add_argument("--sandbox", required=True)
    pull = sub.add_parser("pull", help="PullImage, as kubelet does")
    pull.add_argument("image")
    pull.add_argument("--user", help="USER:PASSWORD of a pull secret, sent as kubelet does (no server address)")
    rmi = sub.add_parser("rmi", help="RemoveImage")
    rmi.add_argument("image")
    args = p.parse_args()
    runtime, images = stubs(args.socket)

    if args.cmd in ("run", "restart"):
        objects = load(args.manifests)
        sandbox, container, probe, grace, pull_policy = pod_configs(daemonset(objects), objects, args.node, args.host_ip,
                                                       args.state, args.api_server, args.service_account,
                                                                    args.cluster_dns)
        present = images.ImageStatus(cri.ImageStatusRequest(image=container.image)).image.id
        if not present:
            if pull_policy == "Never":
                sys.exit(f"image {container.image.image} is not on the node and imagePullPolicy is Never")
            images.PullImage(cri.PullImageRequest(image=container.image, sandbox_config=sandbox))
        if args.cmd == "run":
            sandbox_id = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=sandbox)).pod_sandbox_id
        else:
            sandbox_id = args.sandbox
            runtime.StopContainer(cri.StopContainerRequest(container_id=args.container, timeout=grace))
            runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=args.container))
            container.metadata.attempt = 1
        out = start_container(runtime, sandbox_id, sandbox, container, probe, args.host_ip, args.ready_within)
        out["sandbox"] = sandbox_id
        print(json.dumps(out))
    elif args.cmd == "stop":
        runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=args.sandbox))
        runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=args.sandbox))
        print(json.dumps({"stopped": args.sandbox}))
    elif args.cmd == "pull":
        start = time.monotonic()
        auth = None
        if args.user:
            user, _, password = args.user.partition(":")
            auth = cri.AuthConfig(username=user, password=password)
        ref = images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=args.image), auth=auth)).image_ref
        status = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=args.image))).image
        print(json.dumps({"image_ref": ref, "repo_digests": list(status.repo_digests), "size": status.size,
                          "seconds": round(time.monotonic() - start, 3)}))
    elif args.cmd == "rmi":
        images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=args.image)))
        print(json.dumps({"removed": args.image}))


if __name__ == "__main__":
    main()
