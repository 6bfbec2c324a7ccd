// The part of Core ML that runtime/src/vision_coreml.mm uses, declared as Apple documents it
// (developer.apple.com/documentation/coreml), for a clang type check on Linux. Not the SDK.
#pragma once
#import <Foundation/Foundation.h>

typedef enum : NSInteger {
    MLComputeUnitsCPUOnly = 0,
    MLComputeUnitsCPUAndGPU = 1,
    MLComputeUnitsAll = 2,
    MLComputeUnitsCPUAndNeuralEngine = 3,
} MLComputeUnits;

typedef enum : NSInteger {
    MLMultiArrayDataTypeDouble = 0x10000 | 64,
    MLMultiArrayDataTypeFloat64 = 0x10000 | 64,
    MLMultiArrayDataTypeFloat32 = 0x10000 | 32,
    MLMultiArrayDataTypeFloat16 = 0x10000 | 16,
    MLMultiArrayDataTypeFloat = 0x10000 | 32,
    MLMultiArrayDataTypeInt32 = 0x20000 | 32,
} MLMultiArrayDataType;

typedef enum : NSInteger {
    MLFeatureTypeInvalid = 0,
    MLFeatureTypeInt64 = 1,
    MLFeatureTypeDouble = 2,
    MLFeatureTypeString = 3,
    MLFeatureTypeImage = 4,
    MLFeatureTypeMultiArray = 5,
    MLFeatureTypeDictionary = 6,
    MLFeatureTypeSequence = 7,
} MLFeatureType;

@interface MLMultiArray : NSObject
- (instancetype)initWithDataPointer:(void*)dataPointer shape:(NSArray<NSNumber*>*)shape
                           dataType:(MLMultiArrayDataType)dataType strides:(NSArray<NSNumber*>*)strides
                        deallocator:(void (^)(void* bytes))deallocator error:(NSError**)error;
@property(readonly) MLMultiArrayDataType dataType;
@property(readonly, copy) NSArray<NSNumber*>* shape;
@property(readonly, copy) NSArray<NSNumber*>* strides;
- (void)getBytesWithHandler:(void (NS_NOESCAPE ^)(const void* bytes, NSInteger size))handler;
@end

@interface MLMultiArrayConstraint : NSObject
@property(readonly) NSArray<NSNumber*>* shape;
@property(readonly) MLMultiArrayDataType dataType;
@end

@interface MLFeatureDescription : NSObject
@property(readonly) MLFeatureType type;
@property(readonly) MLMultiArrayConstraint* multiArrayConstraint;
@end

@interface MLFeatureValue : NSObject
+ (instancetype)featureValueWithMultiArray:(MLMultiArray*)value;
@property(readonly) MLMultiArray* multiArrayValue;
@end

@protocol MLFeatureProvider
- (MLFeatureValue*)featureValueForName:(NSString*)featureName;
@end

@interface MLDictionaryFeatureProvider : NSObject <MLFeatureProvider>
- (instancetype)initWithDictionary:(NSDictionary<NSString*, id>*)dictionary error:(NSError**)error;
@end

@interface MLModelDescription : NSObject
@property(readonly) NSDictionary<NSString*, MLFeatureDescription*>* inputDescriptionsByName;
@property(readonly) NSDictionary<NSString*, MLFeatureDescription*>* outputDescriptionsByName;
@end

@interface MLModelConfiguration : NSObject
@property MLComputeUnits computeUnits;
@end

@interface MLModel : NSObject
+ (NSURL*)compileModelAtURL:(NSURL*)modelURL error:(NSError**)error;
+ (instancetype)modelWithContentsOfURL:(NSURL*)url configuration:(MLModelConfiguration*)configuration
                                 error:(NSError**)error;
@property(readonly) MLModelDescription* modelDescription;
- (id<MLFeatureProvider>)predictionFromFeatures:(id<MLFeatureProvider>)input error:(NSError**)error;
@end
