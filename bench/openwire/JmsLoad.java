// OpenWire load generator for bench/openwire.sh: one JMS producer -> one JMS consumer on a
// fresh queue, with the ActiveMQ 5.x client (Debian's libactivemq-java), against whichever
// broker the URL names. Every message carries its sequence number; the consumer checks each
// one (order, loss, duplicates). Prints one line of key=value results on stdout.
//
// Usage: java -cp ... JmsLoad <url> <persistent|transient> <seconds> <warmup-seconds> <size> <label>

import java.util.BitSet;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class JmsLoad {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        boolean persistent = args[1].equals("persistent");
        if (!persistent && !args[1].equals("transient")) throw new IllegalArgumentException("case: persistent or transient");
        long seconds = Long.parseLong(args[2]);
        long warmup = Long.parseLong(args[3]);
        int size = Integer.parseInt(args[4]);
        String label = args[5];
        String queue = "bench.openwire." + UUID.randomUUID().toString().substring(0, 8);

        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(url);
        f.setUserName("guest");
        f.setPassword("guest");
        Connection pc = f.createConnection();
        Connection cc = f.createConnection();
        pc.start();
        cc.start();
        Session ps = pc.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Session cs = cc.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer producer = ps.createProducer(ps.createQueue(queue));
        producer.setDeliveryMode(persistent ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT);
        MessageConsumer consumer = cs.createConsumer(cs.createQueue(queue));

        final long start = System.nanoTime();
        final long measureFrom = start + warmup * 1_000_000_000L;
        final long measureTo = measureFrom + seconds * 1_000_000_000L;
        final AtomicLong sent = new AtomicLong();
        final AtomicLong inWindow = new AtomicLong();
        final AtomicLong unique = new AtomicLong();
        final BitSet seen = new BitSet();
        final long[] dupsAndDisorder = new long[2];
        final String[] error = {null};

        Thread consumerThread = new Thread(() -> {
            long expected = 0;
            try {
                while (true) {
                    Message m = consumer.receive(30_000);
                    if (m == null) {
                        // Nothing for 30 s: whatever is missing is lost.
                        return;
                    }
                    BytesMessage b = (BytesMessage) m;
                    long seq = b.readLong();
                    if (b.getBodyLength() != size) throw new java.lang.IllegalStateException("body of " + b.getBodyLength() + " bytes, want " + size);
                    if (seq >= Integer.MAX_VALUE) throw new java.lang.IllegalStateException("bad sequence " + seq);
                    if (seen.get((int) seq)) dupsAndDisorder[0]++;
                    else unique.incrementAndGet();
                    seen.set((int) seq);
                    if (seq != expected) dupsAndDisorder[1]++;
                    expected = seq + 1;
                    long now = System.nanoTime();
                    if (now >= measureFrom && now < measureTo) inWindow.incrementAndGet();
                    if (sentDone && unique.get() >= sent.get()) return;
                }
            } catch (Throwable t) {
                error[0] = t.toString();
            }
        });
        consumerThread.start();

        byte[] filler = new byte[Math.max(0, size - 8)];
        try {
            for (long seq = 0; System.nanoTime() < measureTo; seq++) {
                BytesMessage m = ps.createBytesMessage();
                m.writeLong(seq);
                m.writeBytes(filler);
                producer.send(m);
                sent.incrementAndGet();
            }
        } catch (Throwable t) {
            error[0] = "producer: " + t;
        }
        sentDone = true;
        consumerThread.join(120_000);
        long received = unique.get();
        long lost = sent.get() - received;
        double rate = inWindow.get() / (double) seconds;
        System.out.printf("label=%s case=%s msgs_per_s=%.0f sent=%d received=%d lost=%d duplicates=%d out_of_order=%d error=%s%n",
            label, args[1], rate, sent.get(), received, lost, dupsAndDisorder[0], dupsAndDisorder[1],
            error[0] == null ? "none" : "\"" + error[0].replace('"', '\'') + "\"");
        System.out.flush();
        pc.close();
        cc.close();
        System.exit(error[0] == null && lost == 0 ? 0 : 1);
    }

    static volatile boolean sentDone;
}
