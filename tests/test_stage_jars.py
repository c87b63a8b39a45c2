"""pipelines/stage_jars.py (dataprep stage-jars; scripts/stage_jars.py runs it): every branch a fresh machine can take, on small fake inputs.

Maven is replaced by a fake that writes small jars where ``mvn`` would, so each
branch (official job server served or not, launcher with and without compiled
classes, the prestaged Flink job server, Spark's executor-first folder, a
second run that finds everything staged) runs in well under a second.  The
launchers are real jars: ``java -jar`` runs them (Java 17 is a CI requirement
for the portable runners anyway), so a manifest that Java cannot read fails
here rather than after a 10-minute cluster start in CI.
"""
import importlib.util
import os
import subprocess
import zipfile

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines", "stage_jars.py")

HELLO = """package demo;
public class Hello {
  public static void main(String[] args) { System.out.println("hello " + String.join(",", args)); }
}
"""


@pytest.fixture
def stage_jars(tmp_path, monkeypatch):
    """The script as a module, with its cache folders under ``tmp_path``."""
    spec = importlib.util.spec_from_file_location("stage_jars_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "JAR_DIR", str(tmp_path / "cache" / "jars"))
    monkeypatch.setattr(module, "DIST_DIR", str(tmp_path / "cache" / "dists"))
    return module


def _jar(path, entries=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in (entries or {"marker.txt": os.path.basename(path)}).items():
            z.writestr(name, data)


class FakeMaven:
    """Stands in for ``mvn``: serves the artifacts in ``served``, records every call.

    ``dependency:copy`` of a served ``group:artifact:version:jar`` writes
    ``<outputDirectory>/<artifact>.jar``; ``dependency:copy-dependencies`` of a
    pom whose first dependency is served writes ``dependency_jars`` there.
    """

    def __init__(self, served=(), dependency_jars=("beam-runners-core-2.62.0.jar",
                                                    "flink-core-1.19.0.jar",
                                                    "guava-33.1.0-jre.jar",
                                                    "slf4j-simple-1.7.30.jar")):
        self.served = set(served)
        self.dependency_jars = dependency_jars
        self.calls = []

    def __call__(self, *args, cwd=None, expect_failure=False):
        self.calls.append(args)
        goal = args[0].rsplit(":", 1)[-1]
        props = dict(a[2:].split("=", 1) for a in args[1:] if a.startswith("-D"))
        if goal == "copy":
            _, artifact, version, _ = props["artifact"].split(":")
            if f"{artifact}:{version}" not in self.served:
                return False
            _jar(os.path.join(props["outputDirectory"], f"{artifact}.jar"))
            return True
        if goal == "copy-dependencies":
            with open(os.path.join(cwd, "pom.xml"), encoding="utf-8") as f:
                pom = f.read()
            artifact = pom.split("<artifactId>")[2].split("<")[0]
            version = pom.split("<version>")[2].split("<")[0]
            if f"{artifact}:{version}" not in self.served:
                return False
            for name in self.dependency_jars:
                _jar(os.path.join(props["outputDirectory"], name))
            return True
        raise AssertionError(f"unexpected mvn call {args}")


def _manifest(jar) -> dict[str, str]:
    with zipfile.ZipFile(jar) as z:
        raw = z.read("META-INF/MANIFEST.MF").decode()
    assert all(len(line.encode()) <= 72 for line in raw.split("\r\n")), "manifest lines > 72 bytes"
    joined = raw.replace("\r\n ", "")
    return dict(line.split(": ", 1) for line in joined.split("\r\n") if line)


def _compile_hello(tmp_path) -> str:
    source = tmp_path / "src" / "Hello.java"
    source.parent.mkdir()
    source.write_text(HELLO)
    classes = tmp_path / "classes"
    subprocess.run(["javac", "-d", str(classes), str(source)], check=True)
    return str(classes)


# ---------------------------------------------------------------- launcher jars

def test_a_launcher_without_classes_is_a_manifest_only_jar(stage_jars, tmp_path):
    # The branch that crashed on a fresh machine (os.walk of a list).
    path = str(tmp_path / "launcher.jar")
    classpath = [f"lib/dependency-{i:03d}-with-a-long-name.jar" for i in range(40)]
    stage_jars.write_launcher(path, "demo.Main", classpath)
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["META-INF/MANIFEST.MF"]
    manifest = _manifest(path)
    assert manifest["Main-Class"] == "demo.Main"
    assert manifest["Class-Path"].split() == classpath
    assert stage_jars.launcher_classpath(path) == classpath
    assert not os.path.exists(path + ".tmp")


def test_java_runs_a_launcher_with_classes(stage_jars, tmp_path):
    classes = _compile_hello(tmp_path)
    path = str(tmp_path / "hello.jar")
    stage_jars.write_launcher(path, "demo.Hello", ["nothing-here.jar"], classes)
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["META-INF/MANIFEST.MF", "demo/Hello.class"]
    out = subprocess.run(["java", "-jar", path, "a", "b"], capture_output=True, text=True,
                         check=True)
    assert out.stdout == "hello a,b\n"


def test_java_runs_a_manifest_only_launcher_through_its_class_path(stage_jars, tmp_path):
    classes = _compile_hello(tmp_path)
    lib = tmp_path / "jars" / "launcher.lib"
    lib.mkdir(parents=True)
    stage_jars.write_launcher(str(lib / "hello-impl.jar"), "demo.Hello", [], classes)
    launcher = str(tmp_path / "jars" / "launcher.jar")
    fillers = [f"launcher.lib/filler-{i:02d}-{'x' * 30}.jar" for i in range(10)]
    stage_jars.write_launcher(launcher, "demo.Hello", fillers + ["launcher.lib/hello-impl.jar"])
    out = subprocess.run(["java", "-jar", launcher, "z"], capture_output=True, text=True,
                         check=True, cwd=str(tmp_path))
    assert out.stdout == "hello z\n"


# ---------------------------------------------------------------- job servers

def test_the_official_job_server_is_used_when_served(stage_jars, monkeypatch):
    maven = FakeMaven(served={"beam-runners-flink-1.19-job-server:2.77.0"})
    monkeypatch.setattr(stage_jars, "mvn", maven)
    target = stage_jars.stage_job_server("flink", "2.77.0", "2.62.0", force=False)
    assert target == os.path.join(stage_jars.JAR_DIR, "beam-dataprep-flink-1.19-job-server.jar")
    with zipfile.ZipFile(target) as z:
        assert z.read("marker.txt") == b"beam-runners-flink-1.19-job-server.jar"
    with open(target[:-4] + ".txt", encoding="utf-8") as f:
        assert f.read() == ("official beam-runners-flink-1.19-job-server:2.77.0\n"
                            "for apache-beam 2.77.0 (Python SDK)\n")
    assert len(maven.calls) == 1


def test_an_unserved_job_server_is_assembled_from_the_runner_and_its_dependencies(
        stage_jars, monkeypatch):
    maven = FakeMaven(served={"beam-runners-flink-1.19:2.62.0"})
    monkeypatch.setattr(stage_jars, "mvn", maven)
    target = stage_jars.stage_job_server("flink", "2.77.0", "2.62.0", force=False)
    manifest = _manifest(target)
    assert manifest["Main-Class"] == "org.apache.beam.runners.flink.FlinkJobServerDriver"
    lib = "beam-dataprep-flink-1.19-job-server.lib"
    assert manifest["Class-Path"].split() == [f"{lib}/{j}" for j in sorted(maven.dependency_jars)]
    for entry in manifest["Class-Path"].split():
        assert os.path.isfile(os.path.join(stage_jars.JAR_DIR, entry))
    with open(target[:-4] + ".txt", encoding="utf-8") as f:
        assert f.readline() == "assembled beam-runners-flink-1.19:2.62.0\n"


def test_the_spark_job_server_is_assembled_on_sparks_own_jars(stage_jars, monkeypatch):
    spark_jars = os.path.join(stage_jars.spark_home(), "jars")
    for name in ("spark-core_2.12-3.5.0.jar", "guava-14.0.1.jar"):
        _jar(os.path.join(spark_jars, name))
    maven = FakeMaven(served={"beam-runners-spark-3:2.62.0"},
                      dependency_jars=("beam-runners-spark-3-2.62.0.jar", "guava-33.1.0-jre.jar",
                                       "failureaccess-1.0.2.jar"))
    monkeypatch.setattr(stage_jars, "mvn", maven)
    target = stage_jars.stage_job_server("spark", "2.77.0", "2.62.0", force=False)
    classpath = stage_jars.launcher_classpath(target)
    assert classpath[-2:] == ["../dists/spark-3.5.0/jars/guava-14.0.1.jar",
                              "../dists/spark-3.5.0/jars/spark-core_2.12-3.5.0.jar"]
    stage_jars.stage_spark_executor_first(target)
    folder = target[:-4] + ".executor-first"
    # Beam's Guava goes first on executors; Spark's own Guava 14 is not copied.
    assert sorted(os.listdir(folder)) == ["failureaccess-1.0.2.jar", "guava-33.1.0-jre.jar"]


def test_a_java_release_that_does_not_resolve_stops_with_a_hint(stage_jars, monkeypatch):
    monkeypatch.setattr(stage_jars, "mvn", FakeMaven(served=()))
    with pytest.raises(SystemExit, match="cannot resolve org.apache.beam:beam-runners-flink-1.19:"
                       "2.61.0; try another --java-beam-version"):
        stage_jars.stage_job_server("flink", "2.77.0", "2.61.0", force=False)
    assert not os.path.exists(os.path.join(stage_jars.JAR_DIR,
                                           "beam-dataprep-flink-1.19-job-server.jar"))


def test_a_staged_job_server_is_kept_unless_its_provenance_changed(stage_jars, monkeypatch):
    maven = FakeMaven(served={"beam-runners-flink-1.19:2.62.0", "beam-runners-flink-1.19:2.61.0"})
    monkeypatch.setattr(stage_jars, "mvn", maven)
    stage_jars.stage_job_server("flink", "2.77.0", "2.62.0", force=False)
    calls = len(maven.calls)
    stage_jars.stage_job_server("flink", "2.77.0", "2.62.0", force=False)
    assert len(maven.calls) == calls, "a staged job server was staged again"
    stage_jars.stage_job_server("flink", "2.77.0", "2.61.0", force=False)
    assert len(maven.calls) == calls + 2  # official tried, then assembled from 2.61.0
    target = os.path.join(stage_jars.JAR_DIR, "beam-dataprep-flink-1.19-job-server.txt")
    with open(target, encoding="utf-8") as f:
        assert f.readline() == "assembled beam-runners-flink-1.19:2.61.0\n"
    stage_jars.stage_job_server("flink", "2.77.0", "2.61.0", force=True)
    assert len(maven.calls) == calls + 4


def test_the_prestaged_flink_job_server_compiles_against_the_job_servers_class_path(
        stage_jars, monkeypatch):
    maven = FakeMaven(served={"beam-runners-flink-1.19:2.62.0"})
    monkeypatch.setattr(stage_jars, "mvn", maven)
    job_server = stage_jars.stage_job_server("flink", "2.77.0", "2.62.0", force=False)
    javac_calls = []
    real_run = subprocess.run

    def fake_javac(cmd, check):
        assert cmd[0] == "javac" and check
        javac_calls.append(cmd)
        out = cmd[cmd.index("-d") + 1]
        os.makedirs(os.path.join(out, "beamdataprep"))
        with open(os.path.join(out, "beamdataprep", "PrestagedFlinkJobServer.class"), "wb") as f:
            f.write(b"\xca\xfe\xba\xbe")
        return real_run(["true"], check=True)

    monkeypatch.setattr(stage_jars.subprocess, "run", fake_javac)
    stage_jars.stage_prestaged_flink(job_server)
    (cmd,) = javac_calls
    lib = os.path.join(stage_jars.JAR_DIR, "beam-dataprep-flink-1.19-job-server.lib")
    assert cmd[cmd.index("-cp") + 1].split(os.pathsep) == [
        os.path.join(lib, j) for j in sorted(maven.dependency_jars)]
    assert cmd[-1].endswith(os.path.join("pipelines", "java", "PrestagedFlinkJobServer.java"))
    prestaged = os.path.join(stage_jars.JAR_DIR, "beam-dataprep-flink-1.19-prestaged-job-server.jar")
    with zipfile.ZipFile(prestaged) as z:
        assert z.namelist() == ["META-INF/MANIFEST.MF", "beamdataprep/PrestagedFlinkJobServer.class"]
    assert _manifest(prestaged)["Main-Class"] == "beamdataprep.PrestagedFlinkJobServer"
    listing = os.path.join(stage_jars.JAR_DIR, "beam-dataprep-flink-1.19-cluster.classpath")
    with open(listing, encoding="utf-8") as f:
        # Flink's own jars and logging bindings stay off the cluster's class path.
        assert f.read() == os.pathsep.join([os.path.join(lib, "beam-runners-core-2.62.0.jar"),
                                            os.path.join(lib, "guava-33.1.0-jre.jar")]) + "\n"
    stage_jars.stage_prestaged_flink(job_server)  # up to date: not compiled again
    assert len(javac_calls) == 1


def test_missing_java_or_maven_is_one_clear_line(stage_jars, monkeypatch):
    monkeypatch.setattr(stage_jars.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="^stage_jars: needs java \\(17\\) and mvn on PATH$"):
        stage_jars.main(["--only", "flink"])
