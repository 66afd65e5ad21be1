// The reference for Orrery's Quartz dialect: Quartz's own CronExpression (Debian's libquartz2-java).
// Reads lines "EXPR<TAB>ZONE<TAB>START_EPOCH_MILLIS<TAB>COUNT" and prints, per line, the next COUNT
// fire times after START as comma-separated epoch milliseconds (or "ERROR <message>").
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Date;
import java.util.StringJoiner;
import java.util.TimeZone;
import org.quartz.CronExpression;

public class QuartzRef {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split("\t");
            try {
                CronExpression ce = new CronExpression(f[0]);
                ce.setTimeZone(TimeZone.getTimeZone(f[1]));
                Date d = new Date(Long.parseLong(f[2]));
                StringJoiner out = new StringJoiner(",");
                for (int i = 0; i < Integer.parseInt(f[3]); i++) {
                    d = ce.getNextValidTimeAfter(d);
                    if (d == null) break;
                    out.add(Long.toString(d.getTime()));
                }
                System.out.println(out);
            } catch (Exception e) {
                System.out.println("ERROR " + e.getMessage());
            }
            System.out.flush();
        }
    }
}
