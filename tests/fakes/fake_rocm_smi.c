/*
 * A fake librocm_smi64.so.1 for tests: the ROCm SMI C ABI (the subset aither-hwprofile
 * calls), answering from a fixture file named by $AITHER_FAKE_ROCM_SMI_CONF.
 *
 * Fixture format, one directive per line ('#' starts a comment):
 *   init_error N            rsmi_init returns N (8: RSMI_STATUS_INIT_ERROR)
 *   gpu                     starts a GPU
 *   name S | pci DDDD:BB:DD.F | vram_total N | vram_used N | gfx 0x942
 *   fail QUERY N            QUERY (name|pci|memory) returns N for this GPU
 *
 * Build variant: -DFAKE_ROCM_NO_PCI_ID omits rsmi_dev_pci_id_get (a library too old to use).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GPUS 16
enum { OK = 0, INVALID_ARGS = 1, NOT_SUPPORTED = 2, INIT_ERROR = 8, INSUFFICIENT_SIZE = 11 };

struct gpu {
    char name[256];
    uint64_t bdf, vram_total, vram_used, gfx;
    int fail_name, fail_pci, fail_memory;
};

static struct gpu gpus[MAX_GPUS];
static uint32_t gpu_count;
static int init_error, initialised;

static void load(void) {
    const char *path = getenv("AITHER_FAKE_ROCM_SMI_CONF");
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
        else if (!strcmp(key, "gpu")) { if (gpu_count < MAX_GPUS) g = &gpus[gpu_count++]; }
        else if (!g) continue;
        else if (!strcmp(key, "name")) snprintf(g->name, sizeof g->name, "%s", val);
        else if (!strcmp(key, "pci")) {
            unsigned d = 0, b = 0, dev = 0, fn = 0;
            if (sscanf(val, "%x:%x:%x.%x", &d, &b, &dev, &fn) == 4)
                g->bdf = ((uint64_t)d << 32) | (b << 8) | (dev << 3) | fn;
        } else if (!strcmp(key, "vram_total")) g->vram_total = strtoull(val, NULL, 0);
        else if (!strcmp(key, "vram_used")) g->vram_used = strtoull(val, NULL, 0);
        else if (!strcmp(key, "gfx")) g->gfx = strtoull(val, NULL, 0);
        else if (!strcmp(key, "fail")) {
            char q[32] = {0};
            int code = 0;
            if (sscanf(val, "%31s %d", q, &code) != 2) continue;
            if (!strcmp(q, "name")) g->fail_name = code;
            else if (!strcmp(q, "pci")) g->fail_pci = code;
            else if (!strcmp(q, "memory")) g->fail_memory = code;
        }
    }
    fclose(f);
}

int rsmi_init(uint64_t flags) {
    (void)flags;
    load();
    if (init_error) return init_error;
    initialised = 1;
    return OK;
}
int rsmi_shut_down(void) { initialised = 0; return OK; }
int rsmi_num_monitor_devices(uint32_t *n) {
    if (!initialised) return INIT_ERROR;
    if (!n) return INVALID_ARGS;
    *n = gpu_count;
    return OK;
}

#define DEV(i) do { if (!initialised) return INIT_ERROR; if ((i) >= gpu_count) return INVALID_ARGS; } while (0)

int rsmi_dev_name_get(uint32_t i, char *name, size_t len) {
    DEV(i);
    if (gpus[i].fail_name) return gpus[i].fail_name;
    if (!name) return INVALID_ARGS;
    if (strlen(gpus[i].name) + 1 > len) return INSUFFICIENT_SIZE;
    strcpy(name, gpus[i].name);
    return OK;
}

#ifndef FAKE_ROCM_NO_PCI_ID
int rsmi_dev_pci_id_get(uint32_t i, uint64_t *bdf) {
    DEV(i);
    if (gpus[i].fail_pci) return gpus[i].fail_pci;
    if (!bdf) return INVALID_ARGS;
    *bdf = gpus[i].bdf;
    return OK;
}
#endif

int rsmi_dev_memory_total_get(uint32_t i, int type, uint64_t *total) {
    DEV(i);
    if (gpus[i].fail_memory) return gpus[i].fail_memory;
    if (!total) return INVALID_ARGS;
    if (type != 0) return NOT_SUPPORTED;
    *total = gpus[i].vram_total;
    return OK;
}

int rsmi_dev_memory_usage_get(uint32_t i, int type, uint64_t *used) {
    DEV(i);
    if (gpus[i].fail_memory) return gpus[i].fail_memory;
    if (!used) return INVALID_ARGS;
    if (type != 0) return NOT_SUPPORTED;
    *used = gpus[i].vram_used;
    return OK;
}

int rsmi_dev_target_graphics_version_get(uint32_t i, uint64_t *gfx) {
    DEV(i);
    if (!gfx) return INVALID_ARGS;
    if (!gpus[i].gfx) return NOT_SUPPORTED;
    *gfx = gpus[i].gfx;
    return OK;
}
