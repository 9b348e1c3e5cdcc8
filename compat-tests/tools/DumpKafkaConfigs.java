// Dumps the config definitions of the Apache Kafka jars on the classpath as JSON: every broker
// config (KafkaConfig) and topic config (LogConfig) with its type, default, documentation and
// validator, which broker configs are dynamic (and how), the broker synonyms of each topic config
// and the synonym groups of broker configs. Runnel embeds the output
// (crates/cluster/src/kafka_configs.json) so DescribeConfigs and the AlterConfigs validation
// answer from Kafka's own definitions rather than a hand-copied list.
//
// Run through gen_kafka_configs.sh, which puts the compat cache's Kafka jars on the classpath.

import java.lang.reflect.Field;
import java.util.*;
import java.util.function.Function;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.server.config.AbstractKafkaConfig;
import org.apache.kafka.server.config.ConfigSynonym;
import org.apache.kafka.server.config.DynamicBrokerConfig;
import org.apache.kafka.server.config.ServerTopicConfigSynonyms;
import org.apache.kafka.storage.internals.log.LogConfig;

public class DumpKafkaConfigs {
    public static void main(String[] args) throws Exception {
        StringBuilder out = new StringBuilder();
        out.append("{\n  \"kafka_version\": ").append(str(org.apache.kafka.common.utils.internals.AppInfoParser.getVersion())).append(",\n");

        Map<String, String> modes = DynamicBrokerConfig.dynamicConfigUpdateModes();
        out.append("  \"broker\": [\n");
        List<ConfigDef.ConfigKey> brokerKeys = new ArrayList<>(AbstractKafkaConfig.CONFIG_DEF.configKeys().values());
        brokerKeys.removeIf(k -> k.internalConfig);
        brokerKeys.sort(Comparator.comparing(k -> k.name));
        for (int i = 0; i < brokerKeys.size(); i++) {
            ConfigDef.ConfigKey key = brokerKeys.get(i);
            String mode = modes.getOrDefault(key.name, "read-only");
            List<String> synonyms = DynamicBrokerConfig.brokerConfigSynonyms(key.name, false);
            out.append("    {").append(common(key))
                .append(", \"dynamic\": ").append(str(mode))
                .append(", \"synonyms\": ").append(strList(synonyms))
                .append(", \"listener_prefix_only\": ").append(DynamicBrokerConfig.DYNAMIC_SECURITY_CONFIGS.contains(key.name))
                .append("}").append(i + 1 < brokerKeys.size() ? ",\n" : "\n");
        }
        out.append("  ],\n");

        // Dynamic broker configs outside KafkaConfig (the replication throttles): settable, never read-only in
        // validation, yet reported read-only by DescribeConfigs (not in ALL_DYNAMIC_CONFIGS).
        out.append("  \"broker_quota\": [\n");
        List<ConfigDef.ConfigKey> quotaKeys = new ArrayList<>(org.apache.kafka.server.config.QuotaConfig.brokerQuotaConfigs().configKeys().values());
        quotaKeys.sort(Comparator.comparing(k -> k.name));
        for (int i = 0; i < quotaKeys.size(); i++) {
            out.append("    {").append(common(quotaKeys.get(i))).append("}").append(i + 1 < quotaKeys.size() ? ",\n" : "\n");
        }
        out.append("  ],\n");

        out.append("  \"topic\": [\n");
        Map<String, ConfigDef.ConfigKey> topicKeys = LogConfig.configKeys();
        List<String> topicNames = LogConfig.nonInternalConfigNames();
        for (int i = 0; i < topicNames.size(); i++) {
            ConfigDef.ConfigKey key = topicKeys.get(topicNames.get(i));
            StringBuilder syn = new StringBuilder("[");
            List<ConfigSynonym> brokerSynonyms = ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS.getOrDefault(key.name, List.of());
            for (int j = 0; j < brokerSynonyms.size(); j++) {
                ConfigSynonym s = brokerSynonyms.get(j);
                if (j > 0) syn.append(", ");
                syn.append("{\"name\": ").append(str(s.name())).append(", \"to_ms_factor\": ").append(factor(s.converter())).append("}");
            }
            syn.append("]");
            out.append("    {").append(common(key))
                .append(", \"broker_synonyms\": ").append(syn)
                .append("}").append(i + 1 < topicNames.size() ? ",\n" : "\n");
        }
        out.append("  ]\n}\n");
        System.out.print(out);
    }

    /** The unit conversion of a broker synonym: 1 (none), 60000 (minutes) or 3600000 (hours). */
    static long factor(Function<String, String> converter) {
        if (converter == ConfigSynonym.HOURS_TO_MILLISECONDS) return 3_600_000L;
        if (converter == ConfigSynonym.MINUTES_TO_MILLISECONDS) return 60_000L;
        if (!"7".equals(converter.apply("7"))) throw new IllegalStateException("unknown synonym converter");
        return 1L;
    }

    static String common(ConfigDef.ConfigKey key) throws Exception {
        String def = null;
        boolean hasDefault = key.hasDefault();
        if (hasDefault && key.defaultValue != null) def = ConfigDef.convertToString(key.defaultValue, key.type);
        return "\"name\": " + str(key.name)
            + ", \"type\": " + str(key.type.name())
            + ", \"default\": " + (def == null ? "null" : str(def))
            + ", \"has_default\": " + hasDefault
            + ", \"validator\": " + validator(key.validator)
            + ", \"documentation\": " + (key.documentation == null ? "null" : str(key.documentation));
    }

    static Object field(Object o, String name) throws Exception {
        Field f = o.getClass().getDeclaredField(name);
        f.setAccessible(true);
        return f.get(o);
    }

    /** The validators runnel re-implements, as data; any other kind is named so runnel can say it does not check it. */
    static String validator(ConfigDef.Validator v) throws Exception {
        if (v == null) return "null";
        if (v instanceof ConfigDef.Range) {
            Number min = (Number) field(v, "min");
            Number max = (Number) field(v, "max");
            return "{\"kind\": \"range\", \"min\": " + num(min) + ", \"max\": " + num(max) + "}";
        }
        if (v instanceof ConfigDef.ValidString) {
            @SuppressWarnings("unchecked") List<String> values = (List<String>) field(v, "validStrings");
            return "{\"kind\": \"one_of\", \"values\": " + strList(values) + ", \"case_insensitive\": false}";
        }
        if (v instanceof ConfigDef.CaseInsensitiveValidString) {
            @SuppressWarnings("unchecked") Collection<String> values = (Collection<String>) field(v, "validStrings");
            return "{\"kind\": \"one_of\", \"values\": " + strList(new ArrayList<>(values)) + ", \"case_insensitive\": true}";
        }
        if (v instanceof ConfigDef.ValidList) {
            Object vs = field(v, "validString");
            @SuppressWarnings("unchecked") List<String> values = (List<String>) field(vs, "validStrings");
            return "{\"kind\": \"list\", \"values\": " + strList(values)
                + ", \"empty_allowed\": " + field(v, "isEmptyAllowed")
                + ", \"null_allowed\": " + field(v, "isNullAllowed") + "}";
        }
        return "{\"kind\": \"other\", \"class\": " + str(v.getClass().getName()) + ", \"text\": " + str(String.valueOf(v)) + "}";
    }

    static String num(Number n) {
        if (n == null) return "null";
        if (n instanceof Double || n instanceof Float) return str(n.toString());
        return n.toString();
    }

    static String strList(List<String> values) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < values.size(); i++) {
            if (i > 0) b.append(", ");
            b.append(str(values.get(i)));
        }
        return b.append("]").toString();
    }

    static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
