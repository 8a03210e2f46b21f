/*
 * A fake libnvidia-ml.so.1 for tests: the NVML C ABI (the subset aither-hwprofile calls),
 * answering from a fixture file named by $AITHER_FAKE_NVML_CONF.
 *
 * Fixture format, one directive per line ('#' starts a comment):
 *   init_error N            nvmlInit_v2 returns N (9: driver not loaded)
 *   driver_version S        cuda_version N (e.g. 12040)
 *   gpu                     starts a GPU; the lines below describe it
 *   name S | uuid S | bus_id S | device_id 0xDDDDVVVV | subsystem_id 0xSSSSVVVV
 *   memory_total N | memory_free N | cc MAJOR MINOR | power_limit_mw N
 *   mig 0|1|none | persistence 0|1 | nvlink LINK PEER_BUS_ID
 *   fail QUERY N            QUERY (name|uuid|pci|memory|cc|power|all) returns N for this GPU
 *
 * Build variants: -DFAKE_NVML_NO_MEMORY_V2 omits nvmlDeviceGetMemoryInfo_v2 (an old driver);
 * -DFAKE_NVML_NO_INIT_V2 omits nvmlInit_v2 (not an NVML library at all).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GPUS 16
#define MAX_LINKS 18

typedef int nvmlReturn_t;
enum { OK = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, INSUFFICIENT_SIZE = 7, UNKNOWN = 999 };

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

struct gpu {
    char name[96], uuid[96], bus_id[32];
    unsigned int device_id, subsystem_id, power_limit_mw;
    unsigned long long memory_total, memory_free;
    int cc_major, cc_minor, mig, persistence;
    char link_peer[MAX_LINKS][32];
    int fail_name, fail_uuid, fail_pci, fail_memory, fail_cc, fail_power, fail_all;
};

typedef struct gpu *nvmlDevice_t;

static struct gpu gpus[MAX_GPUS];
static unsigned int gpu_count;
static char driver_version[80] = "550.54.15";
static int cuda_version = 12040;
static int init_error;
static int initialised;

static void load(void) {
    const char *path = getenv("AITHER_FAKE_NVML_CONF");
    memset(gpus, 0, sizeof gpus);
    gpu_count = 0;
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    struct gpu *g = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char key[64] = {0};
        int off = 0;
        if (sscanf(line, "%63s %n", key, &off) < 1) continue;
        char *val = line + off;
        if (!strcmp(key, "init_error")) init_error = atoi(val);
        else if (!strcmp(key, "driver_version")) snprintf(driver_version, sizeof driver_version, "%s", val);
        else if (!strcmp(key, "cuda_version")) cuda_version = atoi(val);
        else if (!strcmp(key, "gpu")) {
            if (gpu_count < MAX_GPUS) {
                g = &gpus[gpu_count++];
                g->mig = -1;
            }
        } else if (!g) continue;
        else if (!strcmp(key, "name")) snprintf(g->name, sizeof g->name, "%s", val);
        else if (!strcmp(key, "uuid")) snprintf(g->uuid, sizeof g->uuid, "%s", val);
        else if (!strcmp(key, "bus_id")) snprintf(g->bus_id, sizeof g->bus_id, "%s", val);
        else if (!strcmp(key, "device_id")) g->device_id = (unsigned)strtoul(val, NULL, 0);
        else if (!strcmp(key, "subsystem_id")) g->subsystem_id = (unsigned)strtoul(val, NULL, 0);
        else if (!strcmp(key, "memory_total")) g->memory_total = strtoull(val, NULL, 0);
        else if (!strcmp(key, "memory_free")) g->memory_free = strtoull(val, NULL, 0);
        else if (!strcmp(key, "cc")) sscanf(val, "%d %d", &g->cc_major, &g->cc_minor);
        else if (!strcmp(key, "power_limit_mw")) g->power_limit_mw = (unsigned)strtoul(val, NULL, 0);
        else if (!strcmp(key, "mig")) g->mig = strcmp(val, "none") ? atoi(val) : -1;
        else if (!strcmp(key, "persistence")) g->persistence = atoi(val);
        else if (!strcmp(key, "nvlink")) {
            int link = 0;
            char peer[32] = {0};
            if (sscanf(val, "%d %31s", &link, peer) == 2 && link >= 0 && link < MAX_LINKS)
                snprintf(g->link_peer[link], sizeof g->link_peer[link], "%s", peer);
        } else if (!strcmp(key, "fail")) {
            char q[32] = {0};
            int code = 0;
            if (sscanf(val, "%31s %d", q, &code) != 2) continue;
            if (!strcmp(q, "name")) g->fail_name = code;
            else if (!strcmp(q, "uuid")) g->fail_uuid = code;
            else if (!strcmp(q, "pci")) g->fail_pci = code;
            else if (!strcmp(q, "memory")) g->fail_memory = code;
            else if (!strcmp(q, "cc")) g->fail_cc = code;
            else if (!strcmp(q, "power")) g->fail_power = code;
            else if (!strcmp(q, "all")) g->fail_all = code;
        }
    }
    fclose(f);
}

static nvmlReturn_t do_init(void) {
    load();
    if (init_error) return init_error;
    initialised = 1;
    return OK;
}

#ifndef FAKE_NVML_NO_INIT_V2
nvmlReturn_t nvmlInit_v2(void) { return do_init(); }
#endif
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return do_init(); }
nvmlReturn_t nvmlShutdown(void) { initialised = 0; return OK; }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 9: return "Driver Not Loaded";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}

#define CHECK_INIT() do { if (!initialised) return UNINITIALIZED; } while (0)
#define CHECK_DEV(d, which)                  \
    do {                                     \
        CHECK_INIT();                        \
        if (!(d)) return INVALID_ARGUMENT;   \
        if ((d)->fail_all) return (d)->fail_all; \
        if ((d)->which) return (d)->which;   \
    } while (0)

static nvmlReturn_t copy_str(char *dst, unsigned int len, const char *src) {
    if (!dst) return INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return OK;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *v, unsigned int len) { CHECK_INIT(); return copy_str(v, len, driver_version); }
nvmlReturn_t nvmlSystemGetNVMLVersion(char *v, unsigned int len) { CHECK_INIT(); return copy_str(v, len, "12.550.54.15"); }
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { CHECK_INIT(); if (!v) return INVALID_ARGUMENT; *v = cuda_version; return OK; }
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { return nvmlSystemGetCudaDriverVersion_v2(v); }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) { CHECK_INIT(); if (!n) return INVALID_ARGUMENT; *n = gpu_count; return OK; }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    CHECK_INIT();
    if (!d || i >= gpu_count) return INVALID_ARGUMENT;
    *d = &gpus[i];
    return OK;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *n, unsigned int len) { CHECK_DEV(d, fail_name); return copy_str(n, len, d->name); }
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *u, unsigned int len) { CHECK_DEV(d, fail_uuid); return copy_str(u, len, d->uuid); }

static void fill_pci(nvmlPciInfo_t *p, const char *bus_id, unsigned device_id, unsigned subsystem_id) {
    memset(p, 0, sizeof *p);
    snprintf(p->busId, sizeof p->busId, "%s", bus_id);
    snprintf(p->busIdLegacy, sizeof p->busIdLegacy, "%s", bus_id + (strlen(bus_id) > 12 ? 4 : 0));
    sscanf(bus_id, "%x:%x:%x", &p->domain, &p->bus, &p->device);
    p->pciDeviceId = device_id;
    p->pciSubSystemId = subsystem_id;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p) {
    CHECK_DEV(d, fail_pci);
    if (!p) return INVALID_ARGUMENT;
    fill_pci(p, d->bus_id, d->device_id, d->subsystem_id);
    return OK;
}

#ifndef FAKE_NVML_NO_MEMORY_V2
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    CHECK_DEV(d, fail_memory);
    if (!m) return INVALID_ARGUMENT;
    m->total = d->memory_total;
    m->free = d->memory_free;
    m->reserved = d->memory_total / 100;
    m->used = d->memory_total - d->memory_free - m->reserved;
    return OK;
}
#endif

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor) {
    CHECK_DEV(d, fail_cc);
    if (!major || !minor) return INVALID_ARGUMENT;
    *major = d->cc_major;
    *minor = d->cc_minor;
    return OK;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int *mw) {
    CHECK_DEV(d, fail_power);
    if (!mw) return INVALID_ARGUMENT;
    if (!d->power_limit_mw) return NOT_SUPPORTED;
    *mw = d->power_limit_mw;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    CHECK_DEV(d, fail_all);
    if (!current || !pending) return INVALID_ARGUMENT;
    if (d->mig < 0) return NOT_SUPPORTED;
    *current = *pending = (unsigned)d->mig;
    return OK;
}

nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t d, int *mode) {
    CHECK_DEV(d, fail_all);
    if (!mode) return INVALID_ARGUMENT;
    *mode = d->persistence;
    return OK;
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int link, int *active) {
    CHECK_DEV(d, fail_all);
    if (!active) return INVALID_ARGUMENT;
    if (link >= MAX_LINKS) return INVALID_ARGUMENT;
    int any = 0;
    for (int i = 0; i < MAX_LINKS; i++) any |= d->link_peer[i][0] != 0;
    if (!any) return NOT_SUPPORTED;
    *active = d->link_peer[link][0] != 0;
    return OK;
}

nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t d, unsigned int link, nvmlPciInfo_t *p) {
    CHECK_DEV(d, fail_all);
    if (!p || link >= MAX_LINKS || !d->link_peer[link][0]) return INVALID_ARGUMENT;
    fill_pci(p, d->link_peer[link], 0, 0);
    return OK;
}
