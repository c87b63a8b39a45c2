#!/usr/bin/env python3
"""Stage Beam's Flink and Spark job servers (and the cluster distributions) for offline runs.

Run once before ``--run_config flink_local`` (or spark_local, the clusters):
``dataprep stage-jars`` (an installed wheel) or ``python scripts/stage_jars.py``
(a checkout); needs Java 17 and Maven on PATH.

Job servers go to Beam's jar cache, ``~/.apache_beam/cache/jars/``, under stable
names that the run configs use:

    beam-dataprep-flink-1.19-job-server.jar
    beam-dataprep-spark-3-job-server.jar

For each runner the official shaded job-server jar of the installed Beam version
(``org.apache.beam:beam-runners-<runner>-job-server:<version>``) is fetched with
``mvn dependency:copy``.  Where the Maven repository at hand does not serve it,
the job server is assembled from parts instead: the runner artifact of the
newest Beam Java release that resolves (``--java-beam-version``), its runtime
dependencies (``mvn dependency:copy-dependencies``) and a launcher jar whose
manifest names the main class and the class path.  A ``.txt`` beside each jar
says which it is.

The standalone clusters need Flink's and Spark's distributions; both come from
PyPI source packages, unpacked without installing anything into a venv:
``apache-flink-libraries`` (Flink's lib/ jars; never ``apache-flink``, which
pins an old apache-beam) and ``pyspark`` (Spark's jars and launch scripts).
They go to ``~/.apache_beam/cache/dists/``.

For the Flink session cluster a second Flink job server is built beside the
first (see ``stage_prestaged_flink``): one whose jobs ship no jars because the
cluster has Beam's jars on its class path.  The Spark job server runs on the
same Spark jars as the cluster, so driver and executors always agree.

    python scripts/stage_jars.py            # everything (idempotent: skips what is staged)
    python scripts/stage_jars.py --only flink
"""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

CACHE = os.path.expanduser(os.environ.get("BEAM_DATAPREP_CACHE", "~/.apache_beam/cache"))
JAR_DIR = os.path.join(CACHE, "jars")
DIST_DIR = os.path.join(CACHE, "dists")

FLINK_MINOR = "1.19"           # Beam publishes job servers for Flink 1.19 .. 2.2
FLINK_VERSION = "1.19.0"       # the Flink the fallback job server is built against
SPARK_VERSION = "3.5.0"        # Beam's Spark 3 runner is built and tested on 3.5.0
JAVA_BEAM_FALLBACK = "2.62.0"  # newest Beam Java release whose runner modules all resolve here
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

RUNNERS = {
    "flink": {
        "name": f"beam-dataprep-flink-{FLINK_MINOR}-job-server",
        "official": f"beam-runners-flink-{FLINK_MINOR}-job-server",
        "runner": f"beam-runners-flink-{FLINK_MINOR}",
        "main": "org.apache.beam.runners.flink.FlinkJobServerDriver",
        "prestaged": f"beam-dataprep-flink-{FLINK_MINOR}-prestaged-job-server",
        "cluster_classpath": f"beam-dataprep-flink-{FLINK_MINOR}-cluster.classpath",
    },
    "spark": {
        "name": "beam-dataprep-spark-3-job-server",
        "official": "beam-runners-spark-3-job-server",
        "runner": "beam-runners-spark-3",
        "main": "org.apache.beam.runners.spark.SparkJobServerDriver",
    },
}


def log(message):
    print(f"stage_jars: {message}", file=sys.stderr, flush=True)


def installed_beam_version():
    import apache_beam
    return apache_beam.__version__


def mvn(*args, cwd=None, expect_failure=False):
    """Run Maven quietly; True when it succeeded.

    Its output is shown only on an unexpected failure (``expect_failure``: a
    look-up whose failure has a fallback, e.g. an artifact that may not be served).
    """
    cmd = ["mvn", "-B", "-q", *args]
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    if proc.returncode and not expect_failure:
        tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
        log(f"mvn {' '.join(args[:2])} failed:\n{tail}")
    return proc.returncode == 0


def fetch_official(spec, version, target):
    """The shaded job-server jar of ``version``, copied to ``target``; False if not served."""
    with tempfile.TemporaryDirectory() as tmp:
        artifact = f"org.apache.beam:{spec['official']}:{version}:jar"
        if not mvn(f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact}",
                   f"-DoutputDirectory={tmp}", "-Dmdep.stripVersion=true", expect_failure=True):
            return False
        shutil.move(os.path.join(tmp, f"{spec['official']}.jar"), target + ".tmp")
    os.replace(target + ".tmp", target)
    return True


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>beam-dataprep</groupId><artifactId>job-server-classpath</artifactId><version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.30</version>
    </dependency>
  </dependencies>
</project>
"""


def assemble(spec, version, target, extra_classpath=()):
    """Runner artifact + runtime dependencies + launcher jar at ``target``."""
    lib = target[: -len(".jar")] + ".lib"
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "pom.xml"), "w", encoding="utf-8") as f:
            f.write(POM.format(artifact=spec["runner"], version=version))
        staging = os.path.join(tmp, "lib")
        if not mvn(f"{DEPENDENCY_PLUGIN}:copy-dependencies", f"-DoutputDirectory={staging}",
                   "-DincludeScope=runtime", cwd=tmp):
            raise SystemExit(f"stage_jars: cannot resolve org.apache.beam:{spec['runner']}:"
                             f"{version}; try another --java-beam-version")
        shutil.rmtree(lib, ignore_errors=True)
        shutil.move(staging, lib)
    jars = sorted(os.path.join(os.path.basename(lib), j) for j in os.listdir(lib))
    jars += [os.path.relpath(p, JAR_DIR) for p in extra_classpath]
    write_launcher(target, spec["main"], jars)


def write_launcher(path, main_class, classpath, classes_dir=None):
    """A jar holding a manifest: ``java -jar`` then runs ``main_class`` on ``classpath``.

    Class-Path entries are relative to the jar's folder; manifest lines are
    wrapped at 72 bytes as the jar specification requires.  ``classes_dir``
    (compiled classes) goes into the jar too.
    """
    def header(name, value):
        line = f"{name}: {value}".encode()
        chunks = [line[:72]] + [b" " + line[i:i + 71] for i in range(72, len(line), 71)]
        return b"\r\n".join(chunks) + b"\r\n"

    manifest = (header("Manifest-Version", "1.0") + header("Main-Class", main_class)
                + header("Class-Path", " ".join(classpath)) + b"\r\n")
    with zipfile.ZipFile(path + ".tmp", "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
        if classes_dir is not None:
            for folder, dirs, files in os.walk(classes_dir):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(folder, name)
                    jar.write(full, os.path.relpath(full, classes_dir))
    os.replace(path + ".tmp", path)


def launcher_classpath(jar):
    """The class path a job-server jar runs on: its manifest's Class-Path, else the jar itself."""
    with zipfile.ZipFile(jar) as z:
        manifest = z.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "").replace("\n ", "")
    for line in manifest.splitlines():
        if line.startswith("Class-Path:"):
            return line[len("Class-Path:"):].split()
    return [os.path.basename(jar)]


def stage_spark_executor_first(job_server_jar):
    """Jars Spark executors must load before Spark's own: ``<job server>.executor-first/``.

    Spark's distribution carries Guava 14 (for Hive) on every executor's class
    path ahead of the jars a job ships, so Beam's GCS file-system registrar,
    built against a current Guava, fails to initialise in the first task of each
    job (NoSuchMethodError, then a retried task).  run_configs/spark_cluster.yaml
    puts this folder first on the executors' class path
    (``spark.executor.extraClassPath``).
    """
    folder = job_server_jar[: -len(".jar")] + ".executor-first"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    spark_jars = os.path.relpath(os.path.join(spark_home(), "jars"), JAR_DIR)
    wanted = [e for e in launcher_classpath(job_server_jar) if not e.startswith(spark_jars)
              and os.path.basename(e).startswith(("guava-", "failureaccess-"))]
    for entry in wanted:  # an official (shaded) job server vendors its Guava: nothing to add
        shutil.copy(os.path.join(JAR_DIR, entry), folder)
    log(f"spark: {folder} ({', '.join(os.path.basename(e) for e in wanted) or 'empty'})")


# Jars a Flink cluster has itself (flink-dist) or must not get twice (logging bindings).
CLUSTER_EXCLUDES = ("flink-", "slf4j-simple-", "log4j-")


def stage_prestaged_flink(job_server_jar, force=False):
    """The job server flink_cluster.yaml uses, and the class path the cluster needs for it.

    ``pipelines/java/PrestagedFlinkJobServer.java`` (Beam's Flink job server that
    attaches no jars to its jobs) is compiled against the job server's class
    path into ``beam-dataprep-flink-<v>-prestaged-job-server.jar``; the Beam
    jars of that class path, less what Flink's own lib/ has, are listed in
    ``beam-dataprep-flink-<v>-cluster.classpath`` for scripts/flink_cluster.sh
    to put on the JobManager's and TaskManager's class path.
    """
    spec = RUNNERS["flink"]
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "java",
                          "PrestagedFlinkJobServer.java")
    target = os.path.join(JAR_DIR, spec["prestaged"] + ".jar")
    listing = os.path.join(JAR_DIR, spec["cluster_classpath"])
    if (not force and os.path.exists(listing) and os.path.exists(target) and os.path.getmtime(target)
            >= max(os.path.getmtime(source), os.path.getmtime(job_server_jar))):
        log(f"flink: {target} already staged")
        return
    classpath = launcher_classpath(job_server_jar)
    absolute = [os.path.join(JAR_DIR, entry) for entry in classpath]
    with tempfile.TemporaryDirectory() as classes:
        subprocess.run(["javac", "-nowarn", "--release", "17", "-d", classes,
                        "-cp", os.pathsep.join(absolute), source], check=True)
        write_launcher(target, "beamdataprep.PrestagedFlinkJobServer", classpath, classes)
    cluster = [p for p in absolute if not os.path.basename(p).startswith(CLUSTER_EXCLUDES)]
    with open(listing, "w", encoding="utf-8") as f:
        f.write(os.pathsep.join(cluster) + "\n")
    log(f"flink: {target} (jobs ship no jars; the cluster loads {len(cluster)} Beam jars)")


def pip_download_unpack(package, version, members, dest):
    """Unpack ``members`` (folders under ``deps/``) of a PyPI source package into ``dest``."""
    if all(os.path.isdir(os.path.join(dest, m)) for m in members):
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "-d", tmp, f"{package}=={version}"], check=True)
        (archive,) = [os.path.join(tmp, n) for n in os.listdir(tmp)]
        unpacked = os.path.join(tmp, "unpacked")
        with tarfile.open(archive) as tar:
            prefix = f"{os.path.basename(archive)[: -len('.tar.gz')]}/deps/"
            wanted = [m for m in tar.getmembers()
                      if any(m.name.startswith(prefix + d + "/") for d in members)]
            tar.extractall(unpacked, members=wanted, filter="tar")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(os.path.join(unpacked, prefix), dest)
    log(f"unpacked {package} {version} into {dest}")


def spark_home():
    return os.path.join(DIST_DIR, f"spark-{SPARK_VERSION}")


def flink_home():
    return os.path.join(DIST_DIR, f"flink-{FLINK_VERSION}")


def stage_dists(which):
    if "flink" in which:
        pip_download_unpack("apache-flink-libraries", FLINK_VERSION, ["lib", "bin"], flink_home())
    if "spark" in which:
        pip_download_unpack("pyspark", SPARK_VERSION, ["bin", "sbin", "jars"], spark_home())


def stage_job_server(runner, beam_version, java_beam_version, force):
    spec = RUNNERS[runner]
    target = os.path.join(JAR_DIR, spec["name"] + ".jar")
    provenance_path = target[: -len(".jar")] + ".txt"
    wanted = [f"official {spec['official']}:{beam_version}",
              f"assembled {spec['runner']}:{java_beam_version}"]
    if not force and os.path.exists(target) and os.path.exists(provenance_path):
        with open(provenance_path, encoding="utf-8") as f:
            if f.readline().strip() in wanted:
                log(f"{runner}: {target} already staged")
                return target
    os.makedirs(JAR_DIR, exist_ok=True)
    if fetch_official(spec, beam_version, target):
        provenance = wanted[0]
    else:
        log(f"{runner}: {spec['official']}:{beam_version} is not served; assembling "
            f"the job server from {spec['runner']}:{java_beam_version}")
        extra = []
        if runner == "spark":  # the runner leaves Spark itself to the environment ('provided')
            jars = os.path.join(spark_home(), "jars")
            extra = [os.path.join(jars, j) for j in sorted(os.listdir(jars))]
        assemble(spec, java_beam_version, target, extra)
        provenance = wanted[1]
    with open(provenance_path, "w", encoding="utf-8") as f:
        f.write(f"{provenance}\nfor apache-beam {beam_version} (Python SDK)\n")
    log(f"{runner}: {provenance} -> {target}")
    return target


def main(argv=None):
    from pipelines import cli
    cli.run_job("stage_jars", run, argv)


def build_parser():
    from pipelines import cli
    parser = cli.ArgumentParser("stage_jars", __doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(RUNNERS), action="append",
                        help="stage only this runner (repeatable); default: all")
    parser.add_argument("--java-beam-version", default=JAVA_BEAM_FALLBACK,
                        help="Beam Java release to assemble a job server from when the "
                        f"official jar is not served (default: {JAVA_BEAM_FALLBACK})")
    parser.add_argument("--force", action="store_true", help="restage even if present")
    return parser


def run(argv=None):
    args = build_parser().parse_args(argv)
    which = args.only or sorted(RUNNERS)
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise SystemExit("stage_jars: needs java (17) and mvn on PATH")
    stage_dists(which)
    beam_version = installed_beam_version()
    for runner in which:
        jar = stage_job_server(runner, beam_version, args.java_beam_version, args.force)
        if runner == "flink":
            stage_prestaged_flink(jar, args.force)
        else:
            stage_spark_executor_first(jar)


if __name__ == "__main__":
    main()
