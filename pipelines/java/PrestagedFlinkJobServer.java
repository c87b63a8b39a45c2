package beamdataprep;

import java.lang.reflect.Method;
import java.util.Collections;
import org.apache.beam.model.pipeline.v1.RunnerApi;
import org.apache.beam.runners.flink.FlinkJobInvoker;
import org.apache.beam.runners.flink.FlinkJobServerDriver;
import org.apache.beam.runners.flink.FlinkPipelineOptions;
import org.apache.beam.runners.flink.FlinkPipelineRunner;
import org.apache.beam.runners.jobsubmission.JobInvocation;
import org.apache.beam.runners.jobsubmission.PortablePipelineRunner;
import org.apache.beam.vendor.guava.v32_1_2_jre.com.google.common.util.concurrent.ListeningExecutorService;

/**
 * Beam's Flink job server for a session cluster whose JobManager and TaskManagers
 * already have Beam's runner jars on their class path (scripts/flink_cluster.sh
 * starts one so): its jobs ship no jars.
 *
 * <p>Beam's own job server attaches its whole class path (~150 MB) to every job;
 * Flink uploads it to the JobManager's blob store, each TaskManager downloads it
 * and loads Beam's classes afresh in a per-job class loader.  On a small machine
 * that costs far more than the job itself.  Same arguments as Beam's
 * FlinkJobServerDriver; only the jars attached to each job differ.
 */
public final class PrestagedFlinkJobServer {
  private PrestagedFlinkJobServer() {}

  public static void main(String[] args) throws Exception {
    // What FlinkJobServerDriver.main does first: default file systems for artifact staging.
    org.apache.beam.sdk.io.FileSystems.setDefaultPipelineOptions(
        org.apache.beam.sdk.options.PipelineOptionsFactory.create());
    FlinkJobServerDriver.FlinkServerConfiguration config = FlinkJobServerDriver.parseArgs(args);
    String confDir = flinkConfDir(config);
    FlinkJobServerDriver.fromConfig(config, () -> new Invoker(config, confDir)).run();
  }

  /** The server's --flink-conf-dir (its getter is package-private in Beam). */
  private static String flinkConfDir(FlinkJobServerDriver.FlinkServerConfiguration config)
      throws ReflectiveOperationException {
    Method getter = config.getClass().getDeclaredMethod("getFlinkConfDir");
    getter.setAccessible(true);
    return (String) getter.invoke(config);
  }

  private static final class Invoker extends FlinkJobInvoker {
    private final String confDir;

    Invoker(FlinkJobServerDriver.FlinkServerConfiguration config, String confDir) {
      super(config);
      this.confDir = confDir;
    }

    @Override
    protected JobInvocation createJobInvocation(
        String invocationId,
        String retrievalToken,
        ListeningExecutorService executorService,
        RunnerApi.Pipeline pipeline,
        FlinkPipelineOptions flinkOptions,
        PortablePipelineRunner pipelineRunner) {
      PortablePipelineRunner runner =
          pipelineRunner instanceof FlinkPipelineRunner
              ? new FlinkPipelineRunner(flinkOptions, confDir, Collections.emptyList())
              : pipelineRunner;  // e.g. the portable-jar creator: unchanged
      return super.createJobInvocation(
          invocationId, retrievalToken, executorService, pipeline, flinkOptions, runner);
    }
  }
}
